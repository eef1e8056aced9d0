--- Blazedit for Neovim: registers blazedit-lsp and drives its commands.
---
---   require("blazedit").setup({ settings = { presets = { "Add type hints" } } })
---
--- The server's contract (docs/contracts.md): `blazedit.editFile {uri, version?, instruction?}`,
--- `blazedit.cancel {uri?}` (no uri: cancel all), `blazedit.status` (no arguments).
local M = {}

local NAME = 'blazedit'
local INFO, WARN, ERROR = vim.log.levels.INFO, vim.log.levels.WARN, vim.log.levels.ERROR

--- The languages Blazedit attaches to by default (one list for all editors: docs/editors.md).
M.default_filetypes = require('blazedit.filetypes')

--- Options of setup(); any other key is an error.
local defaults = {
  --- Command that starts the server (a list, or one string).
  cmd = { 'blazedit-lsp' },
  --- Server configuration, sent as initializationOptions and as the "blazedit" settings section.
  settings = {},
  --- Filetypes the server attaches to.
  filetypes = M.default_filetypes,
  --- Files that mark a project root (the server also works without one).
  root_markers = { '.git' },
  --- 'notify' (vim.notify on begin/end, echo on reports), 'statusline' (only M.statusline()), or false.
  progress = 'notify',
}

--- The server's configuration keys (docs/editors.md, "Configuration"; docs/lsp.md has them all).
M.server_keys = {
  'engine',
  'engineToken',
  'engineModel',
  'model',
  'draft',
  'method',
  'presets',
  'defaultInstruction',
  'instructionMarker',
  'maxFileBytes',
  'progressIntervalMs',
  'commandTimeoutMs',
  'applyTimeoutMs',
  'applyWhileStreaming',
  'guardRemovals',
  'retryUnchanged',
  'warm',
  'warmDelayMs',
  'review',
  'maxNewTokens',
  'maxNgram',
  'numTokens',
  'assistedStartTokens',
  'microDraftTokens',
  'maxNumRun',
  'maxDraftTokens',
}

local config = nil --- resolved options; nil until setup()
local active = {} --- progress token -> { title, message, percentage }

local notify = vim.schedule_wrap(function(msg, level)
  vim.notify(msg, level or INFO, { title = 'Blazedit' })
end)

local function sorted_keys(t)
  local keys = vim.tbl_keys(t)
  table.sort(keys)
  return keys
end

local function is_string_list(v)
  if type(v) ~= 'table' then
    return false
  end
  for i, item in pairs(v) do
    if type(i) ~= 'number' or type(item) ~= 'string' then
      return false
    end
  end
  return true
end

--- Checks setup() options; raises an error naming the problem.
local function validate(opts)
  local function fail(msg)
    error('blazedit.setup: ' .. msg, 0)
  end
  if type(opts) ~= 'table' then
    fail('expected a table of options, got ' .. type(opts))
  end
  local unknown = {}
  for key in pairs(opts) do
    if defaults[key] == nil then
      table.insert(unknown, tostring(key))
    end
  end
  if #unknown > 0 then
    table.sort(unknown)
    fail(
      ('unknown option%s %s (valid options: %s; server configuration goes in `settings`)'):format(
        #unknown > 1 and 's' or '',
        table.concat(unknown, ', '),
        table.concat(sorted_keys(defaults), ', ')
      )
    )
  end
  if type(opts.cmd) == 'string' then
    opts.cmd = { opts.cmd }
  end
  if opts.cmd ~= nil and (not is_string_list(opts.cmd) or #opts.cmd == 0) then
    fail('`cmd` must be a non-empty list of strings, e.g. { "blazedit-lsp" }')
  end
  if opts.settings ~= nil and (type(opts.settings) ~= 'table' or vim.islist(opts.settings) and next(opts.settings)) then
    fail('`settings` must be a table of server options, e.g. { engine = "auto" }')
  end
  for _, key in ipairs({ 'filetypes', 'root_markers' }) do
    if opts[key] ~= nil and not is_string_list(opts[key]) then
      fail(('`%s` must be a list of strings'):format(key))
    end
  end
  if opts.progress ~= nil and not vim.list_contains({ 'notify', 'statusline', false }, opts.progress) then
    fail('`progress` must be "notify", "statusline" or false')
  end
end

--- The server configuration table; `vim.empty_dict()` when empty so it encodes as {} not [].
local function server_settings()
  if next(config.settings) == nil then
    return vim.empty_dict()
  end
  return vim.deepcopy(config.settings)
end

local function client_config()
  local settings = server_settings()
  return {
    cmd = config.cmd,
    filetypes = config.filetypes,
    root_markers = config.root_markers,
    init_options = settings,
    settings = { [NAME] = settings },
  }
end

--- Neovim 0.10 fallback: start (or reuse) the client per buffer with vim.lsp.start.
local function start_fallback(bufnr)
  if vim.bo[bufnr].buftype ~= '' or not vim.list_contains(config.filetypes, vim.bo[bufnr].filetype) then
    return
  end
  local cfg = client_config()
  cfg.name = NAME
  cfg.root_dir = vim.fs.root(bufnr, config.root_markers) or vim.fn.getcwd()
  vim.lsp.start(cfg, { bufnr = bufnr })
end

local function on_progress(token, value)
  local key = tostring(token)
  if value.kind == 'begin' then
    active[key] = { title = value.title, message = value.message, percentage = value.percentage }
  elseif value.kind == 'report' then
    local p = active[key] or {}
    p.message = value.message or p.message
    p.percentage = value.percentage or p.percentage
    active[key] = p
  elseif value.kind == 'end' then
    local p = active[key] or {}
    active[key] = nil
    p.message = value.message or 'done'
    p.percentage = nil
    if config.progress == 'notify' then
      notify(M.format_progress(p))
    end
    return
  end
  if config.progress == 'notify' then
    if value.kind == 'begin' then
      notify(M.format_progress(active[key]))
    else
      vim.api.nvim_echo({ { M.format_progress(active[key]) } }, false, {})
    end
  end
end

--- Registers blazedit-lsp. Call once, from your config.
---@param opts? {cmd?: string|string[], settings?: table, filetypes?: string[], root_markers?: string[], progress?: 'notify'|'statusline'|false}
function M.setup(opts)
  opts = opts == nil and {} or opts
  validate(opts)
  if vim.fn.has('nvim-0.10') == 0 then
    error('blazedit: Neovim 0.10 or newer is required (0.11+ recommended)', 0)
  end
  config = vim.tbl_extend('force', vim.deepcopy(defaults), opts)
  local unknown = vim.tbl_filter(function(key)
    return not vim.list_contains(M.server_keys, key)
  end, vim.tbl_keys(config.settings))
  if #unknown > 0 then
    table.sort(unknown)
    notify(
      ('blazedit: unknown server setting%s %s (known: %s)'):format(
        #unknown > 1 and 's' or '',
        table.concat(unknown, ', '),
        table.concat(M.server_keys, ', ')
      ),
      WARN
    )
  end

  local group = vim.api.nvim_create_augroup('blazedit', { clear = true })
  vim.api.nvim_create_autocmd('LspProgress', {
    group = group,
    callback = function(ev)
      local client = vim.lsp.get_client_by_id(ev.data.client_id)
      local params = ev.data.params
      if client and client.name == NAME and type(params.value) == 'table' then
        on_progress(params.token, params.value)
        vim.cmd.redrawstatus()
      end
    end,
  })

  if vim.lsp.config ~= nil and vim.lsp.enable ~= nil then
    -- Neovim 0.11+: the config is resolved and started on FileType by Neovim itself.
    vim.lsp.config(NAME, client_config())
    vim.lsp.enable(NAME)
  else
    vim.api.nvim_create_autocmd('FileType', {
      group = group,
      callback = function(ev)
        start_fallback(ev.buf)
      end,
    })
    for _, bufnr in ipairs(vim.api.nvim_list_bufs()) do
      if vim.api.nvim_buf_is_loaded(bufnr) then
        start_fallback(bufnr)
      end
    end
  end

  -- A second setup() updates running servers.
  for _, client in ipairs(vim.lsp.get_clients({ name = NAME })) do
    client.settings = { [NAME] = server_settings() }
    if vim.fn.has('nvim-0.11') == 1 then
      client:notify('workspace/didChangeConfiguration', { settings = client.settings })
    else
      client.notify('workspace/didChangeConfiguration', { settings = client.settings })
    end
  end
end

--- The resolved options (nil before setup).
function M.get_config()
  return config and vim.deepcopy(config)
end

--- Instructions configured as presets (for completion and pickers).
function M.presets()
  local presets = config and config.settings.presets
  return type(presets) == 'table' and vim.deepcopy(presets) or {}
end

--- The blazedit client attached to `bufnr`, or when `any`, any running blazedit client.
function M.get_client(bufnr, any)
  local client = vim.lsp.get_clients({ bufnr = bufnr, name = NAME })[1]
  if client == nil and any then
    client = vim.lsp.get_clients({ name = NAME })[1]
  end
  return client
end

local function attached_client(bufnr, any)
  local client = M.get_client(bufnr, any)
  if client == nil then
    local why = config == nil and 'require("blazedit").setup{} was not called'
      or ('blazedit-lsp is not attached to this buffer (filetype %q)'):format(vim.bo[bufnr].filetype)
    notify('Blazedit: ' .. why .. '; see :checkhealth blazedit', ERROR)
  end
  return client
end

--- Runs a server command through workspace/executeCommand.
local function exec(client, bufnr, command, arguments, on_result)
  local function handler(err, result)
    if err then
      notify(('Blazedit: %s failed: %s'):format(command, err.message or vim.inspect(err)), ERROR)
    elseif on_result then
      on_result(result)
    end
  end
  if client.exec_cmd then
    client:exec_cmd({ title = command, command = command, arguments = arguments }, { bufnr = bufnr }, handler)
  else -- Neovim 0.10
    client.request('workspace/executeCommand', { command = command, arguments = arguments }, handler, bufnr)
  end
end

--- The argument object of blazedit.editFile (exposed for tests).
function M.edit_arguments(bufnr, instruction)
  local args = { uri = vim.uri_from_bufnr(bufnr), version = vim.lsp.util.buf_versions[bufnr] }
  if instruction ~= nil and instruction ~= '' then
    args.instruction = instruction
  end
  return args
end

--- Asks the server to rewrite the whole buffer.
--- `instruction` nil: prompt with vim.ui.input; '' : use the file's instruction comment or the default.
---@param opts? {bufnr?: integer, instruction?: string}
function M.edit(opts)
  opts = opts or {}
  local bufnr = (opts.bufnr == nil or opts.bufnr == 0) and vim.api.nvim_get_current_buf() or opts.bufnr
  local client = attached_client(bufnr, false)
  if client == nil then
    return
  end
  local function send(instruction)
    exec(client, bufnr, 'blazedit.editFile', { M.edit_arguments(bufnr, instruction) })
  end
  if opts.instruction ~= nil then
    send(opts.instruction)
    return
  end
  vim.ui.input({ prompt = 'Blazedit instruction (empty: instruction comment or default): ' }, function(input)
    if input ~= nil then -- nil: the prompt was dismissed
      send(input)
    end
  end)
end

--- Cancels the edit of the current buffer, or with `all`, every edit of every blazedit server.
---@param opts? {bufnr?: integer, all?: boolean}
function M.cancel(opts)
  opts = opts or {}
  local bufnr = (opts.bufnr == nil or opts.bufnr == 0) and vim.api.nvim_get_current_buf() or opts.bufnr
  if opts.all then
    local clients = vim.lsp.get_clients({ name = NAME })
    if #clients == 0 then
      attached_client(bufnr, true)
    end
    for _, client in ipairs(clients) do
      exec(client, bufnr, 'blazedit.cancel', { vim.empty_dict() })
    end
    return
  end
  local client = attached_client(bufnr, false)
  if client then
    exec(client, bufnr, 'blazedit.cancel', { { uri = vim.uri_from_bufnr(bufnr) } })
  end
end

--- Reverts the last AI edit of the current buffer (hunks applied while streaming included),
--- keeping what was typed since; the server refuses where that typing touches the edited lines.
---@param opts? {bufnr?: integer}
function M.undo(opts)
  opts = opts or {}
  local bufnr = (opts.bufnr == nil or opts.bufnr == 0) and vim.api.nvim_get_current_buf() or opts.bufnr
  local client = attached_client(bufnr, false)
  if client then
    exec(client, bufnr, 'blazedit.undo', { { uri = vim.uri_from_bufnr(bufnr) } })
  end
end

--- Asks the server for its status (engine, models, jobs); the server shows it (window/showMessage)
--- and `on_result`, if given, receives the result table.
---@param on_result? fun(result: table)
function M.status(on_result)
  local bufnr = vim.api.nvim_get_current_buf()
  local client = attached_client(bufnr, true)
  if client then
    exec(client, bufnr, 'blazedit.status', nil, on_result)
  end
end

--- One line for a progress entry: "Blazedit: add docstrings 42% 120 tokens".
function M.format_progress(p)
  local title = p.title or 'edit'
  local parts = { title:match('^Blazedit') and title or ('Blazedit: ' .. title) }
  if p.percentage then
    table.insert(parts, ('%d%%'):format(p.percentage))
  end
  if p.message and p.message ~= '' then
    table.insert(parts, p.message)
  end
  return table.concat(parts, ' ')
end

--- Progress of running edits (token -> {title, message, percentage}).
function M.progress()
  return vim.deepcopy(active)
end

--- For 'statusline': `set statusline+=%{v:lua.require'blazedit'.statusline()}`.
function M.statusline()
  local _, p = next(active)
  return p and M.format_progress(p) or ''
end

return M
