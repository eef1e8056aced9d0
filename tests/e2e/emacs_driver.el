;;; emacs_driver.el --- one eglot session against blazedit-lsp, for test_emacs.py  -*- lexical-binding: t; -*-

;; Run as `emacs --batch -l emacs_driver.el' with BLAZEDIT_TEST set to a JSON object:
;; init (the init.el to load), file, line (where to ask for code actions), flow
;; ("code-action"; "commands": blazedit-edit, blazedit-cancel, blazedit-edit; "review":
;; blazedit-edit, then one hunk rejected and one kept through code actions), title (the
;; action to pick), instruction (what the user types), progress (true: wait for the progress to end too), out (where the
;; results go), connect_s and edit_s (bounds of the waits).
;; What a user does by hand is done here the same way: find-file (the init's
;; `eglot-ensure' connects after the command, so the driver runs `post-command-hook' as
;; the command loop would), M-x eglot-code-actions or M-x blazedit-edit, the answers to
;; their questions.  Every wait is bounded and returns as soon as its condition holds.
;; The results are written as JSON even when a step fails (`errors').

;;; Code:

(require 'json)
(require 'subr-x)

(defvar blazedit-test--params
  (let ((json-object-type 'plist)) (json-read-from-string (getenv "BLAZEDIT_TEST"))))
(defvar blazedit-test--results (list :errors nil :progress nil :prompts nil :titles nil))

(defun blazedit-test--param (key) (plist-get blazedit-test--params key))
(defun blazedit-test--put (key value)
  (setq blazedit-test--results (plist-put blazedit-test--results key value)))
(defun blazedit-test--push (key value)
  (blazedit-test--put key (append (plist-get blazedit-test--results key) (list value))))

(defun blazedit-test--wait (seconds predicate)
  "Process events until PREDICATE holds (t) or SECONDS pass (nil)."
  (with-timeout (seconds nil)
    (while (not (funcall predicate))
      (accept-process-output nil 0.05))
    t))

(defun blazedit-test--progress-ended ()
  (cl-some (lambda (p) (equal (plist-get p :kind) "end")) (plist-get blazedit-test--results :progress)))

(defun blazedit-test--count (kind)
  "How many progress values of KIND (\"begin\", \"end\") arrived."
  (cl-count-if (lambda (p) (equal (plist-get p :kind) kind)) (plist-get blazedit-test--results :progress)))

(defun blazedit-test--code-action (original)
  "M-x eglot-code-actions, from the keyboard (a key event, not a mouse click)."
  (let ((last-nonmenu-event ?\r))
    (call-interactively #'eglot-code-actions))
  ;; Done: the text changed and, when the client announces progress, the progress ended.
  (blazedit-test--put :edit_ended
                      (blazedit-test--wait (blazedit-test--param :edit_s)
                                           (lambda () (and (not (equal (buffer-string) original))
                                                           (or (not (eq (blazedit-test--param :progress) t))
                                                               (blazedit-test--progress-ended)))))))

(defun blazedit-test--commands (original)
  "M-x blazedit-edit, M-x blazedit-cancel while it runs, M-x blazedit-edit to the end."
  (call-interactively #'blazedit-edit)
  (blazedit-test--put :first_begun (blazedit-test--wait (blazedit-test--param :edit_s)
                                                        (lambda () (= (blazedit-test--count "begin") 1))))
  (call-interactively #'blazedit-cancel)
  (blazedit-test--put :first_ended (blazedit-test--wait (blazedit-test--param :edit_s)
                                                        (lambda () (= (blazedit-test--count "end") 1))))
  (blazedit-test--put :after_cancel (buffer-substring-no-properties (point-min) (point-max)))
  (call-interactively #'blazedit-edit)
  (blazedit-test--put :edit_ended (blazedit-test--wait (blazedit-test--param :edit_s)
                                                       (lambda () (and (= (blazedit-test--count "end") 2)
                                                                       (not (equal (buffer-string) original)))))))

(defvar blazedit-test--pick nil
  "The code action the user picks in the review flow (else the `title' parameter).")

(defun blazedit-test--ours ()
  "The blazedit diagnostics flymake shows in the buffer: (LINE . MESSAGE), in order."
  (sort (cl-loop for d in (flymake-diagnostics (point-min) (point-max))
                 when (string-match-p "\\`blazedit: AI change " (flymake-diagnostic-text d))
                 collect (cons (line-number-at-pos (flymake-diagnostic-beg d))
                               (flymake-diagnostic-text d)))
        (lambda (a b) (< (car a) (car b)))))

(defun blazedit-test--review-step (key pick count)
  "Go to the first diagnostic (flymake's own `flymake-goto-next-error'), PICK its code
action with M-x eglot-code-actions, wait for COUNT diagnostics; record them under KEY."
  (goto-char (point-min))
  (flymake-goto-next-error 1 nil t)
  (let ((blazedit-test--pick pick)
        (last-nonmenu-event ?\r))
    (call-interactively #'eglot-code-actions))
  (blazedit-test--put key (list :line (line-number-at-pos)
                                :settled (blazedit-test--wait (blazedit-test--param :edit_s)
                                                              (lambda () (= (length (blazedit-test--ours)) count)))
                                :diagnostics (vconcat (mapcar #'cdr (blazedit-test--ours)))
                                :text (buffer-substring-no-properties (point-min) (point-max)))))

(defun blazedit-test--review (original)
  "M-x blazedit-edit; the edit's hunks as diagnostics; reject the first and keep the
next through their code actions, leave the last."
  (call-interactively #'blazedit-edit)
  (blazedit-test--put :edit_ended
                      (blazedit-test--wait (blazedit-test--param :edit_s)
                                           (lambda () (and (not (equal (buffer-string) original))
                                                           (= (length (blazedit-test--ours)) 3)))))
  (blazedit-test--put :shown (vconcat (mapcar (lambda (d) (vector (car d) (cdr d))) (blazedit-test--ours))))
  (blazedit-test--put :edited (buffer-substring-no-properties (point-min) (point-max)))
  (blazedit-test--review-step :rejected "Reject this AI change" 2)
  (blazedit-test--review-step :kept "Keep this AI change" 1))

(defun blazedit-test--run ()
  (package-activate-all)  ; as an interactive start does before init.el (batch skips it): autoloads
  (load (blazedit-test--param :init) nil t)
  (when (boundp 'blazedit-progress-functions)
    (add-hook 'blazedit-progress-functions
              (lambda (token value)
                (blazedit-test--push :progress (list :token (format "%s" token) :kind (plist-get value :kind)
                                                     :title (plist-get value :title)
                                                     :message (plist-get value :message))))))
  (find-file (blazedit-test--param :file))
  (run-hooks 'post-command-hook)
  (blazedit-test--put :connected (blazedit-test--wait (blazedit-test--param :connect_s) #'eglot-managed-p))
  (unless (eglot-managed-p) (error "eglot did not connect within %ss" (blazedit-test--param :connect_s)))
  (blazedit-test--put :server_class (symbol-name (eieio-object-class (eglot-current-server))))
  (let ((original (buffer-string)))
    (goto-char (point-min))
    (forward-line (1- (blazedit-test--param :line)))
    ;; The user's answers: the action to pick, the instruction to type, yes to eglot's
    ;; confirmation of the server's edit (eglot-confirm-server-initiated-edits).
    (cl-letf (((symbol-function 'completing-read)
               (lambda (prompt collection &rest _)
                 (blazedit-test--push :prompts prompt)
                 (blazedit-test--put :titles (mapcar #'car collection))
                 (or blazedit-test--pick (blazedit-test--param :title))))
              ((symbol-function 'read-string)
               (lambda (prompt &rest _)
                 (blazedit-test--push :prompts prompt)
                 (blazedit-test--param :instruction)))
              ((symbol-function 'y-or-n-p)
               (lambda (prompt) (blazedit-test--push :prompts prompt) t)))
      (pcase (blazedit-test--param :flow)
        ("commands" (blazedit-test--commands original))
        ("review" (blazedit-test--review original))
        (_ (blazedit-test--code-action original))))
    (blazedit-test--put :text (buffer-substring-no-properties (point-min) (point-max)))
    (let ((events (jsonrpc-events-buffer (eglot-current-server))))  ; for a failing test's message
      (blazedit-test--put :events (with-current-buffer events
                                    (buffer-substring-no-properties (max (point-min) (- (point-max) 8000))
                                                                    (point-max)))))
    (dolist (buffer (buffer-list))  ; the server's stderr
      (when (string-match-p "stderr" (buffer-name buffer))
        (blazedit-test--put :stderr (with-current-buffer buffer (buffer-string)))))))

(condition-case err
    (blazedit-test--run)
  (error (blazedit-test--push :errors (error-message-string err))))
(with-temp-file (blazedit-test--param :out)
  (dolist (key '(:errors :progress :prompts :titles))  ; lists as JSON arrays (a list of plists reads as an alist)
    (blazedit-test--put key (vconcat (plist-get blazedit-test--results key))))
  (insert (json-encode blazedit-test--results)))
(kill-emacs 0)

;;; emacs_driver.el ends here
