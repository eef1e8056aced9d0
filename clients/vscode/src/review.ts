// The server's review of an AI edit drawn in VS Code: the AI's lines highlighted, and what
// each hunk replaced shown after its first line (hover: all of it). Keep / Reject come from
// the server's code lenses and quick fixes; the server owns the state (docs/lsp.md).
import * as vscode from 'vscode';
import { LanguageClient } from 'vscode-languageclient/node';
import { HunksParams, removedSummary } from './logic';

const added = vscode.window.createTextEditorDecorationType({
  isWholeLine: true,
  backgroundColor: new vscode.ThemeColor('diffEditor.insertedLineBackground'),
});
const removed = vscode.window.createTextEditorDecorationType({
  after: { color: new vscode.ThemeColor('editorCodeLens.foreground'), margin: '0 0 0 2em', fontStyle: 'italic' },
});
const byUri = new Map<string, HunksParams>();

function paint(editor: vscode.TextEditor): void {
  const review = byUri.get(editor.document.uri.toString());
  const hunks = review?.hunks ?? [];
  const lines = editor.document.lineCount;
  editor.setDecorations(
    added,
    hunks
      .filter((h) => h.range.end.line > h.range.start.line)
      .map((h) => new vscode.Range(h.range.start.line, 0, Math.max(h.range.start.line, h.range.end.line - 1), 0)),
  );
  editor.setDecorations(
    removed,
    hunks.map((h) => {
      const line = Math.min(h.range.start.line, lines - 1);
      const end = editor.document.lineAt(line).range.end;
      const hover = new vscode.MarkdownString().appendCodeblock(h.original || '(nothing: the AI added these lines)');
      return {
        range: new vscode.Range(end, end),
        hoverMessage: hover,
        renderOptions: { after: { contentText: removedSummary(h.original) } },
      };
    }),
  );
}

/** Draw `blazedit/hunks` of `client` (again for each new client: a restart makes one). */
export function drawReview(client: LanguageClient): vscode.Disposable {
  byUri.clear();
  return client.onNotification('blazedit/hunks', (params: HunksParams) => {
    const uri = client.protocol2CodeConverter.asUri(params.uri).toString();
    if (params.hunks.length === 0) {
      byUri.delete(uri);
    } else {
      byUri.set(uri, params);
    }
    vscode.window.visibleTextEditors.filter((e) => e.document.uri.toString() === uri).forEach(paint);
  });
}

/** The decorations, and repainting editors as they are shown; disposed with the extension. */
export function reviewDecorations(): vscode.Disposable[] {
  return [vscode.window.onDidChangeVisibleTextEditors((editors) => editors.forEach(paint)), added, removed];
}
