-- blazedit-lsp for Neovim 0.11+: `vim.lsp.enable("blazedit")` with this directory on the
-- runtimepath starts it (the convention nvim-lspconfig follows). Data only; override with
-- `vim.lsp.config("blazedit", { init_options = { engine = "auto" }, cmd = { ... } })`.
-- `require("blazedit").setup()` merges its options over this. The filetypes are the
-- language table of docs/editors.md (tests check it).
---@type vim.lsp.Config
return {
  cmd = { 'blazedit-lsp' },
  filetypes = {
    'python',
    'rust',
    'go',
    'javascript',
    'javascriptreact',
    'typescript',
    'typescriptreact',
    'c',
    'cpp',
    'css',
    'json',
    'yaml',
    'markdown',
    'sh',
    'bash',
    'zsh',
  },
  root_markers = { '.git' },
}
