import * as vscode from 'vscode';
import {
  DidChangeConfigurationNotification,
  ExecuteCommandRequest,
  LanguageClient,
  LanguageClientOptions,
  ServerOptions,
} from 'vscode-languageclient/node';
import { cancelArguments, editFileArguments, instructionChoices, ProgressTracker, serverSettings } from './logic';
import { drawReview, reviewDecorations } from './review';

let client: LanguageClient | undefined;
let review: vscode.Disposable | undefined;

/** Server configuration from the values the user set explicitly under `blazedit.*`;
 * `warn`: show a warning per ignored value (on start and on change, not on every read). */
function currentSettings(warn = false) {
  const cfg = vscode.workspace.getConfiguration('blazedit');
  const result = serverSettings((key) => {
    const i = cfg.inspect(key);
    return i?.workspaceFolderValue ?? i?.workspaceValue ?? i?.globalValue;
  });
  for (const problem of warn ? result.problems : []) {
    void vscode.window.showWarningMessage(problem);
  }
  return result.settings;
}

async function execute(command: string, args?: unknown[]): Promise<unknown> {
  if (!client?.isRunning()) {
    throw new Error('blazedit-lsp is not running: see the "Blazedit" output channel');
  }
  return client.sendRequest(ExecuteCommandRequest.type, { command, arguments: args });
}

/** Asks for an instruction: presets in a quick pick, else an input box. undefined: dismissed. */
async function askInstruction(): Promise<string | undefined> {
  const settings = currentSettings();
  const typeOne = () =>
    vscode.window.showInputBox({
      title: 'Blazedit: AI edit whole file',
      prompt: `Instruction (empty: the file's "${settings.instructionMarker ?? 'AI:'}" comment or the default)`,
    });
  if (!settings.presets?.length) {
    return typeOne();
  }
  const choice = await vscode.window.showQuickPick(instructionChoices(settings.presets, settings.instructionMarker), {
    title: 'Blazedit: AI edit whole file',
  });
  if (choice === undefined) {
    return undefined;
  }
  return choice.choice === 'preset' ? choice.instruction : choice.choice === 'fromFile' ? '' : typeOne();
}

async function aiEditFile(): Promise<void> {
  const document = vscode.window.activeTextEditor?.document;
  if (!document || !client) {
    void vscode.window.showErrorMessage('Blazedit: open a file first');
    return;
  }
  const instruction = await askInstruction();
  if (instruction === undefined) {
    return;
  }
  const uri = client.code2ProtocolConverter.asUri(document.uri);
  // The server reports rejections and results itself (window/showMessage, progress).
  await execute('blazedit.editFile', editFileArguments(uri, document.version, instruction));
}

async function cancelEdit(options?: { all?: boolean }): Promise<void> {
  const document = vscode.window.activeTextEditor?.document;
  const uri = !options?.all && document && client ? client.code2ProtocolConverter.asUri(document.uri) : undefined;
  await execute('blazedit.cancel', cancelArguments(uri));
}

async function undoEdit(): Promise<void> {
  const document = vscode.window.activeTextEditor?.document;
  if (!document || !client) {
    return;
  }
  await execute('blazedit.undo', [{ uri: client.code2ProtocolConverter.asUri(document.uri) }]);
}

async function showStatus(): Promise<void> {
  const status = await execute('blazedit.status');
  client?.outputChannel.appendLine(`blazedit.status: ${JSON.stringify(status, null, 2)}`);
  client?.outputChannel.show(true);
}

/** Wraps a command so that its errors become an error message. */
function guarded<A extends unknown[]>(run: (...args: A) => Promise<void>) {
  return (...args: A) =>
    run(...args).catch((err: unknown) => {
      void vscode.window.showErrorMessage(`Blazedit: ${err instanceof Error ? err.message : String(err)}`);
    });
}

const progress = new ProgressTracker();
let statusItem: vscode.StatusBarItem | undefined;

function refreshStatus(): void {
  if (!statusItem) {
    return;
  }
  statusItem.text = progress.text();
  statusItem.tooltip = progress.size ? 'Blazedit: click to cancel the running edits' : 'Blazedit: show engine status';
  statusItem.command = progress.size
    ? { title: 'Cancel', command: 'blazedit.cancelEdit', arguments: [{ all: true }] }
    : 'blazedit.showStatus';
}

/** A client for the configured server path, arguments and settings. */
function createClient(): LanguageClient {
  const cfg = vscode.workspace.getConfiguration('blazedit');
  const serverOptions: ServerOptions = {
    command: cfg.get<string>('server.path') || 'blazedit-lsp',
    args: cfg.get<string[]>('server.args') ?? [],
  };
  const clientOptions: LanguageClientOptions = {
    documentSelector: [{ scheme: 'file' }, { scheme: 'untitled' }],
    initializationOptions: currentSettings(true),
    middleware: {
      handleWorkDoneProgress: (token, params, next) => {
        progress.apply(token, params);
        refreshStatus();
        next(token, params);
      },
      workspace: {
        // The server pulls section "blazedit": answer with the mapped settings, not VS Code's raw tree.
        configuration: async (params, token, next) => {
          const result = await next(params, token);
          if (!Array.isArray(result)) {
            return result;
          }
          return params.items.map((item, i) => (item.section === 'blazedit' ? currentSettings() : result[i]));
        },
      },
    },
  };
  // The id 'blazedit' makes the client honour the `blazedit.trace.server` setting.
  return new LanguageClient('blazedit', 'Blazedit', serverOptions, clientOptions);
}

async function restartServer(): Promise<void> {
  await client?.stop();
  progress.clear();
  refreshStatus();
  review?.dispose();
  client = createClient();
  review = drawReview(client);
  await client.start();
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  statusItem = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Right, 100);
  refreshStatus();
  statusItem.show();
  context.subscriptions.push(
    statusItem,
    vscode.commands.registerCommand('blazedit.aiEditFile', guarded(aiEditFile)),
    vscode.commands.registerCommand('blazedit.cancelEdit', guarded(cancelEdit)),
    vscode.commands.registerCommand('blazedit.undoEdit', guarded(undoEdit)),
    vscode.commands.registerCommand('blazedit.showStatus', guarded(showStatus)),
    vscode.commands.registerCommand('blazedit.restartServer', guarded(restartServer)),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (e.affectsConfiguration('blazedit.server')) {
        void vscode.window.showInformationMessage('Blazedit: run "Blazedit: Restart language server" to apply.');
      } else if (e.affectsConfiguration('blazedit') && client?.isRunning()) {
        void client.sendNotification(DidChangeConfigurationNotification.type, {
          settings: { blazedit: currentSettings(true) },
        });
      }
    }),
  );
  context.subscriptions.push(...reviewDecorations(), { dispose: () => review?.dispose() });
  client = createClient();
  review = drawReview(client);
  await client.start();
}

export function deactivate(): Thenable<void> | undefined {
  return client?.stop();
}
