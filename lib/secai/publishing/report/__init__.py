"""secai-report: one build folder as a page a person opens (HTML), a Markdown summary (a README or a
pull-request comment) or plain text (a terminal).

- `facts.gather(build)` reads what `make all` wrote there into one JSON-able dict, nothing
  recomputed but each fix's diff; a part that was not built (no training with SKIP_FINETUNE=1, no
  verification without the scanners) is None, shown as absent.
- `page.html(facts)` renders the page: static, self-contained (styles, script and loss curves
  inline, no link to load anything), every untrusted text escaped; `plain.markdown(facts)` and
  `plain.text(facts)` the same facts in fewer words.
"""
