-- Blazedit user commands. The module is required lazily, on first use:
-- nothing here starts a server; `require("blazedit").setup{}` does.
if vim.g.loaded_blazedit then
  return
end
vim.g.loaded_blazedit = true

local function complete_presets(arglead)
  local ok, blazedit = pcall(require, 'blazedit')
  if not ok then
    return {}
  end
  return vim.tbl_filter(function(preset)
    return vim.startswith(preset, arglead)
  end, blazedit.presets())
end

vim.api.nvim_create_user_command('BlazeditEdit', function(opts)
  require('blazedit').edit({ instruction = opts.args ~= '' and opts.args or nil })
end, {
  nargs = '*',
  complete = complete_presets,
  desc = 'Blazedit: AI edit of the whole buffer (prompts when no instruction is given)',
})

vim.api.nvim_create_user_command('BlazeditCancel', function(opts)
  require('blazedit').cancel({ all = opts.bang })
end, { bang = true, desc = "Blazedit: cancel this buffer's edit (! cancels all)" })

vim.api.nvim_create_user_command('BlazeditUndo', function()
  require('blazedit').undo()
end, { desc = "Blazedit: revert this buffer's last AI edit (keeps later typing)" })

vim.api.nvim_create_user_command('BlazeditKeep', function(opts)
  require('blazedit.review').settle('keep', { all = opts.bang })
end, { bang = true, desc = 'Blazedit: keep the AI change under the cursor (! keeps all)' })

vim.api.nvim_create_user_command('BlazeditReject', function(opts)
  require('blazedit.review').settle('reject', { all = opts.bang })
end, { bang = true, desc = 'Blazedit: reject the AI change under the cursor, putting its text back (! rejects all)' })

-- The server's review of an AI edit (docs/lsp.md): drawn for any client named blazedit,
-- also one started by `vim.lsp.enable` alone.
vim.lsp.handlers['blazedit/hunks'] = function(...)
  return require('blazedit.review').on_hunks(...)
end

vim.api.nvim_create_user_command('BlazeditStatus', function()
  require('blazedit').status()
end, { desc = 'Blazedit: show the engine status' })
