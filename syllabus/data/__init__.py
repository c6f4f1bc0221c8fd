"""The data layer under both sides: what a row says, its keys, reading and writing datasets.

The teacher side (`generators/`) and the student side (`students/`) may not import each
other, yet both read the same files and must agree on what a row's question is and when
two questions are the same one. Both import this package; it imports neither of them.

- `rows`: the question and answer of a row in every format people hand us (TRL
  prompt/completion, conversational or plain text; `messages`; OpenAI content parts;
  question/answer columns), and the TRL cell check training relies on.
- `keys`: the one normalisation, the question key (dedup, decontamination and the
  probe-leak check), the content hash of a generated row.
- `read`: one reader for a run folder, a save_to_disk folder, JSONL (line-numbered
  errors) and Parquet; `write`: the one writer of a dataset folder + JSONL.
- `levels`, `stats`, `mix`: the level orders, `syllabus stats` and `syllabus mix`.
"""
