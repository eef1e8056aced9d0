-- The languages Blazedit attaches to by default (one list for all editors: docs/editors.md);
-- shared by lsp/blazedit.lua and setup().
return {
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
}
