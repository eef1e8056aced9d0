-- blazedit-lsp for Neovim 0.11+: `vim.lsp.enable("blazedit")` with this directory on the
-- runtimepath starts it (the convention nvim-lspconfig follows). Data only; override with
-- `vim.lsp.config("blazedit", { init_options = { engine = "auto" }, cmd = { ... } })`.
-- `require("blazedit").setup()` merges its options over this. The filetypes
-- (lua/blazedit/filetypes.lua) are the language table of docs/editors.md (tests check it).
---@type vim.lsp.Config
return {
  cmd = { 'blazedit-lsp' },
  filetypes = require('blazedit.filetypes'),
  root_markers = { '.git' },
}
