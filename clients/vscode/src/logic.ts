// Pure logic of the extension: no `vscode` import, so node's test runner can test it.

/** The server's configuration (docs/editors.md, "Configuration"; blazedit_lsp/config.py is the source). */
export interface ServerSettings {
  engine?: string;
  engineToken?: string;
  engineModel?: string;
  model?: string;
  draft?: string;
  method?: Method;
  presets?: string[];
  defaultInstruction?: string;
  instructionMarker?: string;
  maxFileBytes?: number;
  progressIntervalMs?: number;
  commandTimeoutMs?: number;
  applyTimeoutMs?: number;
  applyWhileStreaming?: boolean;
  guardRemovals?: GuardRemovals;
  retryUnchanged?: boolean;
  warm?: Warm;
  warmDelayMs?: number;
  review?: Review;
  maxNewTokens?: number;
  maxNgram?: number;
  numTokens?: number;
  assistedStartTokens?: number;
  microDraftTokens?: number;
  maxNumRun?: number;
  maxDraftTokens?: number;
}

export const METHODS = ['regular', 'pld', 'assisted', 'blazedit'] as const;
export type Method = (typeof METHODS)[number];

export const GUARD_REMOVALS = ['ask', 'keep', 'allow'] as const;
export type GuardRemovals = (typeof GUARD_REMOVALS)[number];

export const WARM = ['onOpen', 'off'] as const;
export type Warm = (typeof WARM)[number];

export const REVIEW = ['afterApply', 'preview', 'off'] as const;
export type Review = (typeof REVIEW)[number];

type Kind =
  | 'string'
  | 'boolean'
  | 'method'
  | 'guardRemovals'
  | 'warm'
  | 'review'
  | 'strings'
  | 'positiveInt'
  | 'nonNegativeInt';

/** Server key -> how its value is checked. VS Code setting `blazedit.<key>` maps to server key `<key>`. */
export const SERVER_KEYS: Readonly<Record<keyof ServerSettings, Kind>> = {
  engine: 'string',
  engineToken: 'string',
  engineModel: 'string',
  model: 'string',
  draft: 'string',
  method: 'method',
  presets: 'strings',
  defaultInstruction: 'string',
  instructionMarker: 'string',
  maxFileBytes: 'positiveInt',
  progressIntervalMs: 'nonNegativeInt',
  commandTimeoutMs: 'nonNegativeInt',
  applyTimeoutMs: 'positiveInt',
  applyWhileStreaming: 'boolean',
  guardRemovals: 'guardRemovals',
  retryUnchanged: 'boolean',
  warm: 'warm',
  warmDelayMs: 'nonNegativeInt',
  review: 'review',
  maxNewTokens: 'positiveInt',
  maxNgram: 'positiveInt',
  numTokens: 'positiveInt',
  assistedStartTokens: 'positiveInt',
  microDraftTokens: 'positiveInt',
  maxNumRun: 'positiveInt',
  maxDraftTokens: 'positiveInt',
};

export interface SettingsResult {
  settings: ServerSettings;
  /** One line per ignored value, naming the setting. */
  problems: string[];
}

type Checked = { ok: true; value: unknown } | { ok: false; why: string };

function oneOf(values: readonly string[], value: unknown): Checked {
  return typeof value === 'string' && values.includes(value)
    ? { ok: true, value }
    : { ok: false, why: `expected one of ${values.join(', ')}` };
}

function check(kind: Kind, value: unknown): Checked {
  switch (kind) {
    case 'string':
      return typeof value === 'string' ? { ok: true, value } : { ok: false, why: 'expected a string' };
    case 'boolean':
      return typeof value === 'boolean' ? { ok: true, value } : { ok: false, why: 'expected true or false' };
    case 'method':
      return oneOf(METHODS, value);
    case 'guardRemovals':
      return oneOf(GUARD_REMOVALS, value);
    case 'warm':
      return oneOf(WARM, value);
    case 'review':
      return oneOf(REVIEW, value);
    case 'strings':
      return Array.isArray(value) && value.every((v) => typeof v === 'string')
        ? { ok: true, value: value.map((v: string) => v.trim()).filter((v: string) => v !== '') }
        : { ok: false, why: 'expected a list of strings' };
    case 'positiveInt':
      return Number.isInteger(value) && (value as number) > 0
        ? { ok: true, value }
        : { ok: false, why: 'expected a positive integer' };
    case 'nonNegativeInt':
      return Number.isInteger(value) && (value as number) >= 0
        ? { ok: true, value }
        : { ok: false, why: 'expected a non-negative integer' };
  }
}

/**
 * Maps VS Code settings to the server's configuration.
 *
 * `read(key)` returns the value the user set explicitly for `blazedit.<key>`, or undefined:
 * unset keys (and empty strings / null) are left out so the server keeps its own defaults.
 */
export function serverSettings(read: (key: string) => unknown): SettingsResult {
  const settings: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const [key, kind] of Object.entries(SERVER_KEYS)) {
    const value = read(key);
    if (value === undefined || value === null || value === '') {
      continue;
    }
    const checked = check(kind, value);
    if (checked.ok) {
      settings[key] = checked.value;
    } else {
      problems.push(`blazedit.${key}: ${checked.why}, got ${JSON.stringify(value)}; using the server's default`);
    }
  }
  return { settings: settings as ServerSettings, problems };
}

/** The argument object of `blazedit.editFile`. */
export interface EditFileArguments {
  uri: string;
  version?: number;
  instruction?: string;
}

/** Arguments of `blazedit.editFile`: one object; no instruction means "comment in the file, or the default". */
export function editFileArguments(uri: string, version?: number, instruction?: string): [EditFileArguments] {
  const args: EditFileArguments = { uri };
  if (version !== undefined) {
    args.version = version;
  }
  const text = instruction?.trim();
  if (text) {
    args.instruction = text;
  }
  return [args];
}

/** Arguments of `blazedit.cancel`: `{uri}` cancels that document's edit, `{}` cancels all. */
export function cancelArguments(uri?: string): [{ uri?: string }] {
  return [uri === undefined ? {} : { uri }];
}

export type Choice =
  | { choice: 'custom'; label: string }
  | { choice: 'preset'; label: string; instruction: string }
  | { choice: 'fromFile'; label: string };

/** Quick pick entries: type an instruction, the presets, or use the file's instruction comment. */
export function instructionChoices(presets: readonly string[], marker = 'AI:'): Choice[] {
  return [
    { choice: 'custom', label: '$(edit) Type an instruction...' },
    ...presets.map((p): Choice => ({ choice: 'preset', label: p, instruction: p })),
    { choice: 'fromFile', label: `$(comment) Use the file's "${marker}" comment (or the default instruction)` },
  ];
}

/** One work-done progress (LSP `$/progress` values). */
export interface ProgressValue {
  kind: 'begin' | 'report' | 'end';
  title?: string;
  message?: string;
  percentage?: number;
  cancellable?: boolean;
}

interface Running {
  title: string;
  message?: string;
  percentage?: number;
}

/** Running work-done progress by token; what the status bar shows. */
export class ProgressTracker {
  private readonly running = new Map<string, Running>();

  apply(token: string | number, value: ProgressValue): void {
    const key = String(token);
    if (value.kind === 'end') {
      this.running.delete(key);
      return;
    }
    const entry = this.running.get(key) ?? { title: value.title ?? 'Editing' };
    if (value.kind === 'begin' && value.title) {
      entry.title = value.title;
    }
    entry.message = value.message ?? entry.message;
    entry.percentage = value.percentage ?? entry.percentage;
    this.running.set(key, entry);
  }

  /** Forgets every running entry (the server restarted). */
  clear(): void {
    this.running.clear();
  }

  get size(): number {
    return this.running.size;
  }

  /** Status bar text: idle label, or the first running edit ("+N" when several run). */
  text(): string {
    const first = this.running.values().next();
    if (first.done) {
      return '$(sparkle) Blazedit';
    }
    const p = first.value;
    const title = p.title.startsWith('Blazedit') ? p.title : `Blazedit: ${p.title}`;
    const parts = ['$(sync~spin)', title];
    if (p.percentage !== undefined) {
      parts.push(`${Math.round(p.percentage)}%`);
    }
    if (p.message) {
      parts.push(p.message);
    }
    if (this.running.size > 1) {
      parts.push(`(+${this.running.size - 1})`);
    }
    return parts.join(' ');
  }
}

/** One pending hunk of the server's `blazedit/hunks` notification (docs/lsp.md). */
export interface Hunk {
  id: number;
  range: { start: { line: number; character: number }; end: { line: number; character: number } };
  original: string;
}

export interface HunksParams {
  uri: string;
  version: number | null;
  instruction: string | null;
  hunks: Hunk[];
}

const MAX_INLINE = 60;

/** What a hunk replaced, for one line of inline text: "was: def total(stock): (+2 lines)",
 * "was: nothing (added)". The whole original goes in the hover. */
export function removedSummary(original: string): string {
  const lines = original.split(/\r\n|\r|\n/);
  if (lines[lines.length - 1] === '') {
    lines.pop();
  }
  if (lines.length === 0) {
    return 'was: nothing (added)';
  }
  let first = lines[0].trim();
  if (first.length > MAX_INLINE) {
    first = first.slice(0, MAX_INLINE - 1) + '…';
  }
  const more = lines.length > 1 ? ` (+${lines.length - 1} line${lines.length > 2 ? 's' : ''})` : '';
  return `was: ${first}${more}`;
}
