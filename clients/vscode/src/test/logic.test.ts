// Unit tests of the pure logic, run with node's built-in test runner (`npm test`).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  cancelArguments,
  editFileArguments,
  instructionChoices,
  ProgressTracker,
  removedSummary,
  SERVER_KEYS,
  serverSettings,
} from '../logic';

const fromMap = (values: Record<string, unknown>) => (key: string) => values[key];

test('editFile takes one object; the instruction is trimmed and left out when empty', () => {
  assert.deepEqual(editFileArguments('file:///a.py', 3, '  Add type hints '), [
    { uri: 'file:///a.py', version: 3, instruction: 'Add type hints' },
  ]);
  assert.deepEqual(editFileArguments('file:///a.py', 0, ''), [{ uri: 'file:///a.py', version: 0 }]);
  assert.deepEqual(editFileArguments('file:///a.py', undefined, '   '), [{ uri: 'file:///a.py' }]);
  assert.equal(JSON.stringify(editFileArguments('untitled:Untitled-1')), '[{"uri":"untitled:Untitled-1"}]');
});

test('cancel: {uri} for one document, {} (an object, not an array) for all', () => {
  assert.deepEqual(cancelArguments('file:///a.py'), [{ uri: 'file:///a.py' }]);
  assert.equal(JSON.stringify(cancelArguments()), '[{}]');
});

test('only explicitly set, valid settings reach the server', () => {
  const { settings, problems } = serverSettings(
    fromMap({
      engine: 'tcp://127.0.0.1:7100',
      model: '',
      draft: null,
      method: 'pld',
      presets: [' Add docstrings ', '', 'Fix bugs'],
      instructionMarker: 'AI:',
      maxFileBytes: 200000,
      progressIntervalMs: 0,
      guardRemovals: 'keep',
      warm: 'off',
    }),
  );
  assert.deepEqual(settings, {
    engine: 'tcp://127.0.0.1:7100',
    method: 'pld',
    presets: ['Add docstrings', 'Fix bugs'],
    instructionMarker: 'AI:',
    maxFileBytes: 200000,
    progressIntervalMs: 0,
    guardRemovals: 'keep',
    warm: 'off',
  });
  assert.deepEqual(problems, []);
  assert.deepEqual(serverSettings(fromMap({})), { settings: {}, problems: [] });
});

test('invalid values are dropped with a message naming the setting', () => {
  const { settings, problems } = serverSettings(
    fromMap({
      method: 'fast',
      maxFileBytes: -1,
      progressIntervalMs: 1.5,
      presets: 'Add docs',
      engine: 3,
      guardRemovals: 'never',
      warm: 'always',
    }),
  );
  assert.deepEqual(settings, {});
  assert.equal(problems.length, 7);
  assert.match(problems.join('\n'), /blazedit\.method: expected one of regular, pld, assisted, blazedit/);
  assert.match(problems.join('\n'), /blazedit\.maxFileBytes: expected a positive integer/);
  assert.match(problems.join('\n'), /blazedit\.presets: expected a list of strings/);
  assert.match(problems.join('\n'), /blazedit\.guardRemovals: expected one of ask, keep, allow/);
  assert.match(problems.join('\n'), /blazedit\.warm: expected one of onOpen, off/);
});

test('every server key is contributed as a blazedit.* setting, and nothing else but server.* and trace.*', () => {
  const manifest = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8'));
  const contributed = Object.keys(manifest.contributes.configuration.properties).map((k) => k.replace(/^blazedit\./, ''));
  const clientOnly = contributed.filter((k) => k.startsWith('server.') || k.startsWith('trace.'));
  assert.deepEqual(clientOnly.sort(), ['server.args', 'server.path', 'trace.server']);
  assert.deepEqual(
    contributed.filter((k) => !clientOnly.includes(k)).sort(),
    Object.keys(SERVER_KEYS).sort(),
  );
});

test('quick pick offers a typed instruction, the presets, then the instruction comment', () => {
  const choices = instructionChoices(['Add type hints', 'Fix bugs'], '#AI');
  assert.deepEqual(
    choices.map((c) => c.choice),
    ['custom', 'preset', 'preset', 'fromFile'],
  );
  assert.deepEqual(choices[1], { choice: 'preset', label: 'Add type hints', instruction: 'Add type hints' });
  assert.match(choices[3].label, /"#AI" comment/);
});

test('progress tracker follows begin/report/end per token', () => {
  const tracker = new ProgressTracker();
  assert.equal(tracker.text(), '$(sparkle) Blazedit');
  tracker.apply('t1', { kind: 'begin', title: 'Editing a.py', percentage: 0 });
  tracker.apply('t1', { kind: 'report', message: '120 tokens', percentage: 41.6 });
  assert.equal(tracker.text(), '$(sync~spin) Blazedit: Editing a.py 42% 120 tokens');
  tracker.apply(7, { kind: 'begin', title: 'Blazedit: fix bugs' });
  assert.equal(tracker.size, 2);
  assert.match(tracker.text(), /\(\+1\)$/);
  tracker.apply('t1', { kind: 'end', message: 'done' });
  assert.equal(tracker.text(), '$(sync~spin) Blazedit: fix bugs', 'no doubled "Blazedit:" prefix');
  tracker.apply('7', { kind: 'end' });
  assert.equal(tracker.size, 0);
  assert.equal(tracker.text(), '$(sparkle) Blazedit');
});

test('a hunk\'s removed text in one line: its first line, how many more, or that it was added', () => {
  assert.equal(removedSummary('def total(stock):\n'), 'was: def total(stock):');
  assert.equal(removedSummary('a\r\n  b\nc\n'), 'was: a (+2 lines)');
  assert.equal(removedSummary('a\nb'), 'was: a (+1 line)');
  assert.equal(removedSummary(''), 'was: nothing (added)');
  assert.equal(removedSummary('x'.repeat(80)).length, 'was: '.length + 60);
});
