;;; blazedit.el --- Whole-file AI edits through eglot and blazedit-lsp  -*- lexical-binding: t; -*-

;; Version: 0.1.0
;; Package-Requires: ((emacs "28.1") (eglot "1.9"))
;; Keywords: tools, languages

;;; Commentary:

;; Registers blazedit-lsp with eglot and adds the commands the code actions lack:
;;
;;   (add-to-list 'load-path "/path/to/blazedit-lsp/clients/emacs")
;;   (require 'blazedit)
;;   (blazedit-eglot-setup)                 ; then M-x eglot in a Python buffer
;;
;; M-x blazedit-edit asks for an instruction (empty: the file's instruction comment) and
;; rewrites the buffer; M-x blazedit-cancel stops it; M-x blazedit-status shows the engine.
;; M-x eglot-code-actions on an instruction comment offers "AI edit whole file: ...".
;;
;; Why a class of its own: eglot 1.9 (Debian 12's elpa-eglot, Emacs 28) does not announce
;; window.workDoneProgress, so the server would report progress only to the log; this
;; class announces it and shows `$/progress' in the echo area (newer eglot, which shows
;; progress itself, keeps doing so).  And eglot 1.9 runs a code action's command as a
;; synchronous request: Emacs would wait for the model, give up after 10 s, and Emacs 28's
;; jsonrpc drops the messages that arrive together with a synchronous reply (the edit
;; itself among them); this class runs commands asynchronously.  The server's contract:
;; docs/contracts.md.

;;; Code:

(require 'cl-lib)
(require 'eglot)
(require 'jsonrpc)

(defgroup blazedit nil
  "Whole-file AI edits through blazedit-lsp."
  :group 'tools
  :prefix "blazedit-")

(defcustom blazedit-command '("blazedit-lsp")
  "Command that starts the language server.
Give a full path when blazedit-lsp is not on `exec-path'."
  :type '(repeat string))

(defcustom blazedit-settings '(:engine "auto")
  "Server configuration as a plist, sent as the initialization options.
The keys: docs/editors.md, \"Configuration\"."
  :type 'plist)

(defcustom blazedit-modes '(python-mode python-ts-mode rust-mode rust-ts-mode go-mode go-ts-mode
                            js-mode js-ts-mode typescript-mode typescript-ts-mode tsx-ts-mode
                            c-mode c-ts-mode c++-mode c++-ts-mode css-mode css-ts-mode
                            json-mode json-ts-mode yaml-mode yaml-ts-mode markdown-mode
                            sh-mode bash-ts-mode)
  "Major modes whose buffers `blazedit-eglot-setup' gives to blazedit-lsp.
Eglot runs one server per buffer: these modes lose their other eglot server."
  :type '(repeat symbol))

(defvar blazedit-progress-functions nil
  "Functions called with TOKEN and VALUE for each `$/progress' of blazedit-lsp.
VALUE is the progress plist (:kind :title :message :percentage).")

(defclass blazedit-eglot-server (eglot-lsp-server) ()
  :documentation "blazedit-lsp: announces and shows work done progress.")

(cl-defmethod eglot-client-capabilities ((_server blazedit-eglot-server))
  "Eglot's capabilities for SERVER, with window.workDoneProgress."
  (let* ((capabilities (cl-call-next-method))
         (window (plist-get capabilities :window)))
    (plist-put capabilities :window (plist-put (copy-sequence window) :workDoneProgress t))))

(cl-defmethod eglot-handle-notification
  ((_server blazedit-eglot-server) (_method (eql $/progress)) &key token value)
  "Run `blazedit-progress-functions', then show VALUE.
Eglot 1.12+ (which has `eglot-report-progress') shows it itself."
  (run-hook-with-args 'blazedit-progress-functions token value)
  (if (boundp 'eglot-report-progress)
      (cl-call-next-method)
    (message "Blazedit: %s" (blazedit--progress-text value))))

(cl-defmethod eglot-handle-request
  ((_server blazedit-eglot-server) (_method (eql window/workDoneProgress/create)) &key _token)
  "Accept the progress token (eglot 1.9 does not know this request)."
  nil)

(defun blazedit--progress-text (value)
  "One line for a progress VALUE: \"add type hints 42% 120 tokens\"."
  (let ((percentage (plist-get value :percentage)))
    (mapconcat #'identity
               (delq nil (list (plist-get value :title)
                               (and percentage (format "%d%%" percentage))
                               (plist-get value :message)
                               (and (equal (plist-get value :kind) "end") "(done)")))
               " ")))

;;;###autoload
(defun blazedit-eglot-setup ()
  "Make eglot start blazedit-lsp for `blazedit-modes'."
  (add-to-list 'eglot-server-programs
               `(,blazedit-modes . (blazedit-eglot-server ,@blazedit-command
                                                          :initializationOptions ,blazedit-settings))))

;; eglot >= 1.16 runs code actions through `eglot-execute' instead (untested here).
(cl-defmethod eglot-execute-command ((server blazedit-eglot-server) command arguments)
  "Run COMMAND with ARGUMENTS on SERVER without blocking Emacs."
  (blazedit--command server (format "%s" command) arguments))

(defun blazedit--server ()
  "The blazedit-lsp server of the current buffer, or an error saying what to do."
  (let ((server (eglot-current-server)))
    (unless (cl-typep server 'blazedit-eglot-server)
      (user-error "Blazedit: blazedit-lsp does not manage this buffer; call `blazedit-eglot-setup', then M-x eglot"))
    server))

(defun blazedit--command (server command arguments &optional on-result)
  "Run SERVER's COMMAND with ARGUMENTS (a vector, or nil).
Asynchronous: Emacs does not wait for the edit."
  (eglot--signal-textDocument/didChange)  ; the server must see the text the edit starts from
  (jsonrpc-async-request
   server :workspace/executeCommand `(:command ,command ,@(and arguments (list :arguments arguments)))
   :success-fn (or on-result #'ignore)
   :error-fn (lambda (error) (message "Blazedit: %s failed: %s" command (plist-get error :message)))
   :timeout-fn #'ignore
   :timeout 600))

;;;###autoload
(defun blazedit-edit (instruction)
  "Rewrite the whole buffer following INSTRUCTION.
An empty INSTRUCTION uses the file's instruction comment, else the server's
default instruction."
  (interactive (list (read-string "Blazedit instruction (empty: instruction comment): " nil 'blazedit-history)))
  (let ((arguments (eglot--VersionedTextDocumentIdentifier)))
    (unless (string-empty-p instruction)
      (setq arguments (append arguments (list :instruction instruction))))
    (blazedit--command (blazedit--server) "blazedit.editFile" (vector arguments))))

;;;###autoload
(defun blazedit-cancel (&optional all)
  "Cancel this buffer's edit; with a prefix argument ALL, every edit."
  (interactive "P")
  (blazedit--command (blazedit--server) "blazedit.cancel" (vector (if all eglot--{} (eglot--TextDocumentIdentifier)))))

;;;###autoload
(defun blazedit-status ()
  "Show the engine, its models and the running edits."
  (interactive)
  (blazedit--command (blazedit--server) "blazedit.status" nil
                     (lambda (result) (message "Blazedit: %s" (json-encode result)))))

(provide 'blazedit)
;;; blazedit.el ends here
