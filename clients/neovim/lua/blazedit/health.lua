--- :checkhealth blazedit
local M = {}

local health = vim.health

local function one_line(value)
  return vim.inspect(value, { newline = ' ', indent = '' })
end

local function request_sync(client, method, params, timeout_ms)
  if vim.fn.has('nvim-0.11') == 1 then
    return client:request_sync(method, params, timeout_ms)
  end
  return client.request_sync(method, params, timeout_ms)
end

local function check_neovim()
  health.start('blazedit: Neovim')
  local version = tostring(vim.version())
  if vim.fn.has('nvim-0.11') == 1 then
    health.ok('Neovim ' .. version .. ' (vim.lsp.config / vim.lsp.enable)')
  elseif vim.fn.has('nvim-0.10') == 1 then
    health.warn('Neovim ' .. version .. ': using the vim.lsp.start fallback', { 'Neovim 0.11+ is recommended' })
  else
    health.error('Neovim ' .. version .. ' is too old', { 'Blazedit needs Neovim 0.10+ (0.11+ recommended)' })
  end
end

local function check_setup(config)
  health.start('blazedit: setup')
  if config == nil then
    health.warn('require("blazedit").setup{} was not called', { 'Add require("blazedit").setup{} to your init.lua' })
    return
  end
  health.ok('setup{} called; filetypes: ' .. table.concat(config.filetypes, ', '))
  health.info('server settings: ' .. one_line(config.settings))
end

local function check_executable(cmd)
  health.start('blazedit: server executable')
  local exe = cmd[1]
  if vim.fn.executable(exe) ~= 1 then
    health.error(('`%s` is not executable or not on PATH'):format(exe), {
      'Install the server: pip install blazedit-lsp (in a virtualenv), then put its bin/ on PATH',
      'or point the plugin at it: setup{ cmd = { "/path/to/venv/bin/blazedit-lsp" } }',
    })
    return
  end
  health.ok(('`%s` found: %s'):format(exe, vim.fn.exepath(exe)))
  local ok, result = pcall(function()
    return vim.system({ exe, '--version' }, { text = true, timeout = 10000 }):wait()
  end)
  if ok and result.code == 0 and vim.trim(result.stdout or '') ~= '' then
    health.info('version: ' .. vim.trim(result.stdout))
  end
end

local function model_line(role, info)
  if type(info) ~= 'table' then
    return role .. ': none'
  end
  return ('%s: %s (%s, %s, %s, %s tokens of context)'):format(
    role,
    tostring(info.spec),
    tostring(info.runtime),
    tostring(info.device),
    tostring(info.dtype),
    tostring(info.context_tokens)
  )
end

--- The result of blazedit.status: {engine, jobs, daemon?, error?}.
local function report_status(client, result)
  if type(result) ~= 'table' then
    health.warn(('client %d: unexpected blazedit.status result: %s'):format(client.id, one_line(result)))
  elseif result.error then
    health.error(('client %d: engine %s not reachable: %s'):format(client.id, one_line(result.engine), result.error), {
      'With engine = "auto" the server starts the engine daemon itself; its log path is in the message',
      'Check the `engine`, `model` and `draft` settings and that the models are installed (docs/editors.md)',
    })
  else
    health.ok(('client %d: engine %s reachable'):format(client.id, one_line(result.engine)))
    local daemon = type(result.daemon) == 'table' and result.daemon or {}
    if daemon.target then
      health.ok('models loaded: ' .. model_line('target', daemon.target) .. '; ' .. model_line('draft', daemon.draft))
    end
    if daemon.version then
      health.info(('engine %s, pid %s'):format(tostring(daemon.version), tostring(daemon.pid)))
    end
    health.info(('running edits: %d'):format(type(result.jobs) == 'table' and #result.jobs or 0))
  end
end

local function check_engine()
  health.start('blazedit: engine and models')
  local clients = vim.lsp.get_clients({ name = 'blazedit' })
  if #clients == 0 then
    health.info(
      'No blazedit-lsp client is running: open a file of a configured filetype and run :checkhealth blazedit again'
    )
    return
  end
  for _, client in ipairs(clients) do
    local response, err = request_sync(client, 'workspace/executeCommand', { command = 'blazedit.status' }, 30000)
    if response == nil then
      health.error(('client %d: no answer to blazedit.status (%s)'):format(client.id, err or 'timeout'), {
        'The first request can wait for the model to load (tens of seconds on CPU); try again',
      })
    elseif response.err then
      health.error(('client %d: blazedit.status failed: %s'):format(client.id, response.err.message), {
        'With engine = "auto" the server starts the engine daemon itself; see its log path in the message above',
        'Check the `engine`, `model` and `draft` settings (docs/editors.md, Troubleshooting)',
      })
    else
      report_status(client, response.result)
    end
  end
end

function M.check()
  check_neovim()
  local config = require('blazedit').get_config()
  check_setup(config)
  check_executable(config and config.cmd or { 'blazedit-lsp' })
  check_engine()
  local log = vim.lsp.log and vim.lsp.log.get_filename and vim.lsp.log.get_filename() or vim.lsp.get_log_path()
  health.start('blazedit: logs')
  health.info('Neovim LSP log: ' .. log .. ' (the server also reports its own log path)')
end

return M
