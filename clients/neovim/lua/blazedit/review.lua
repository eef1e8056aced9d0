--- Review of an AI edit in the buffer: the server's `blazedit/hunks` notification drawn with
--- extmarks (the AI's lines highlighted, the lines they replaced as virtual lines above them),
--- `]h` / `[h` to move between hunks, and keep / reject through the server's commands.
--- The server owns the review state (docs/lsp.md, "Reviewing an AI edit"); this only draws it.
local M = {}

M.ns = vim.api.nvim_create_namespace('blazedit_review')
local pending = {} --- bufnr -> { client_id, hunks = { {id, range, original} } }

local function notify(msg, level)
  vim.schedule(function()
    vim.notify('Blazedit: ' .. msg, level or vim.log.levels.INFO, { title = 'Blazedit' })
  end)
end

local function split(text)
  local lines = vim.split(text, '\n', { plain = true })
  if lines[#lines] == '' then
    table.remove(lines)
  end
  return lines
end

--- Buffer-local ]h / [h while hunks are pending, unless the buffer already maps them.
local function map_keys(bufnr, on)
  for lhs, backward in pairs({ [']h'] = false, ['[h'] = true }) do
    local existing = vim.fn.maparg(lhs, 'n', false, true)
    local ours = existing.desc ~= nil and existing.desc:match('^Blazedit') ~= nil and existing.buffer == 1
    if on and vim.tbl_isempty(existing) then
      vim.keymap.set('n', lhs, function()
        M.next({ backward = backward })
      end, { buffer = bufnr, desc = 'Blazedit: ' .. (backward and 'previous' or 'next') .. ' AI change' })
    elseif not on and ours then
      pcall(vim.keymap.del, 'n', lhs, { buffer = bufnr })
    end
  end
end

--- Draws one document's pending hunks (the handler of `blazedit/hunks`).
function M.show(bufnr, client_id, hunks)
  vim.api.nvim_buf_clear_namespace(bufnr, M.ns, 0, -1)
  local count = vim.api.nvim_buf_line_count(bufnr)
  for i, hunk in ipairs(hunks) do
    local first, last = hunk.range.start.line, hunk.range['end'].line
    local removed = {}
    for _, line in ipairs(split(hunk.original)) do
      table.insert(removed, { { '- ' .. line, 'DiffDelete' } })
    end
    local label = { { ('AI change %d/%d'):format(i, #hunks), 'Comment' } }
    local anchor = math.min(first, count - 1)
    vim.api.nvim_buf_set_extmark(bufnr, M.ns, anchor, 0, {
      virt_lines = vim.list_extend({ label }, removed),
      virt_lines_above = first < count,
    })
    for line = first, math.min(last, count) - 1 do
      vim.api.nvim_buf_set_extmark(bufnr, M.ns, line, 0, { line_hl_group = 'DiffAdd', sign_text = '+' })
    end
  end
  pending[bufnr] = #hunks > 0 and { client_id = client_id, hunks = hunks } or nil
  vim.api.nvim_buf_call(bufnr, function() -- maparg() reads the current buffer's maps
    map_keys(bufnr, #hunks > 0)
  end)
end

--- vim.lsp handler for `blazedit/hunks`.
function M.on_hunks(_, result, ctx)
  local bufnr = vim.uri_to_bufnr(result.uri)
  if vim.api.nvim_buf_is_loaded(bufnr) then
    M.show(bufnr, ctx.client_id, result.hunks or {})
  end
end

--- The pending hunks of `bufnr` as the server last sent them.
function M.hunks(bufnr)
  local p = pending[bufnr == 0 and vim.api.nvim_get_current_buf() or bufnr]
  return p and vim.deepcopy(p.hunks) or {}
end

--- The hunk on the cursor's line (a deletion's hunk is on the line after it).
local function at_cursor(bufnr)
  local line = vim.api.nvim_win_get_cursor(0)[1] - 1
  for _, hunk in ipairs(M.hunks(bufnr)) do
    local first, last = hunk.range.start.line, hunk.range['end'].line
    if first <= line and line < math.max(last, first + 1) then
      return hunk
    end
  end
end

--- Moves the cursor to the next (or previous) pending hunk, wrapping around.
---@param opts? {backward?: boolean}
function M.next(opts)
  local hunks = M.hunks(0)
  if #hunks == 0 then
    return notify('no AI changes are pending review in this buffer')
  end
  local line = vim.api.nvim_win_get_cursor(0)[1] - 1
  local target
  if opts and opts.backward then
    for i = #hunks, 1, -1 do
      if hunks[i].range.start.line < line then
        target = hunks[i]
        break
      end
    end
    target = target or hunks[#hunks]
  else
    for _, hunk in ipairs(hunks) do
      if hunk.range.start.line > line then
        target = hunk
        break
      end
    end
    target = target or hunks[1]
  end
  local last = vim.api.nvim_buf_line_count(0)
  vim.api.nvim_win_set_cursor(0, { math.min(target.range.start.line + 1, last), 0 })
end

--- Keeps or rejects the hunk under the cursor, or with `all`, every pending hunk.
---@param what 'keep'|'reject'
---@param opts? {all?: boolean, on_result?: fun(result: table)}
function M.settle(what, opts)
  opts = opts or {}
  local bufnr = vim.api.nvim_get_current_buf()
  local p = pending[bufnr]
  local client = p and vim.lsp.get_client_by_id(p.client_id)
  if client == nil then
    return notify('no AI changes are pending review in this buffer', vim.log.levels.WARN)
  end
  local args = { uri = vim.uri_from_bufnr(bufnr) }
  local command
  if opts.all then
    command = what == 'keep' and 'blazedit.acceptAll' or 'blazedit.rejectAll'
  else
    local hunk = at_cursor(bufnr)
    if hunk == nil then
      return notify('the cursor is not on an AI change (]h goes to the next one)', vim.log.levels.WARN)
    end
    args.hunk = hunk.id
    command = what == 'keep' and 'blazedit.acceptHunk' or 'blazedit.rejectHunk'
  end
  local function handler(err, result)
    if err then
      notify(('%s failed: %s'):format(command, err.message or vim.inspect(err)), vim.log.levels.ERROR)
    elseif opts.on_result then
      opts.on_result(result)
    end
  end
  if client.exec_cmd then
    client:exec_cmd({ title = command, command = command, arguments = { args } }, { bufnr = bufnr }, handler)
  else -- Neovim 0.10
    client.request('workspace/executeCommand', { command = command, arguments = { args } }, handler, bufnr)
  end
end

return M
