"""The re-train button: `touchstone run`, the loop that improves the model with no human involved.

    touchstone run                       # ./workspace, five generations
    touchstone run --hours 8             # as many generations as fit
    touchstone status / touchstone history

Generation 0 prepares the embedded default corpus into data/orig, copies its tokenizer, pretrains
models/gen-0000 and scores it on every world's held-out suite; it becomes the champion. Then each
generation runs these steps, each recorded in the ledger with its wall time:

1. synthesize  candidates from each world's generator, the champion's own samples (touchstone.grow)
               and mutations of existing records; plus this generation's gate set, drawn fresh from
               the worlds' gate items, which training records never use (touchstone.synth)
2. verify      every candidate re-checked by its world's verifier; only agreeing records, new and
               outside the held-out suites and gate sets, enter data/new/gen-NNNN.jsonl with their verdict
3. rework      the training-data compiler over all of data/new (schema, duplicates, conflicting labels,
               evaluation overlap), a re-verification audit of older records, and the records where the
               champion's judgement and the label disagree, re-checked: the verifier upholding the label
               makes a hard example, overruling it quarantines the record. Output: data/rework/gen-NNNN/
               (fixed, quarantine, hard: each with the reason and the original id). data/orig is
               hash-checked against its manifest at the start of every generation.
4. recipe      the recipe of the model trained on (see 5) with one or two settings mutated (loop.recipe)
5. train       a challenger fine-tuned on a draw from data/new (minus quarantined, hard examples
               repeated) plus the language-model loss on data/orig, starting from the champion, or
               from the last rejected challenger when the gate found that one no worse (training_base)
6. gate        champion and challenger on the gate set (McNemar's exact test) and on every held-out
               suite (regression guard); see touchstone.loop.gate. Promotion moves models/CHAMPION.

Crash safety. Every file that matters is written to a staging path, fsynced and renamed; a model
directory appears whole or not at all; models/CHAMPION is replaced atomically and only ever names a
complete model. A step's ledger row is committed after its files are in place, so on restart the loop
redoes exactly the steps without a row; their outputs are rewritten whole, so nothing is duplicated,
and the gate compares against the champion recorded when the generation began. Two loops on one
workspace: an exclusive lock (flock, released by the kernel even on kill -9) makes the second refuse.

SIGTERM (systemd, `docker stop`) stops at once, exit status 143; the unfinished step is redone by the
next run, as after kill -9. Ctrl-C (SIGINT) lets the current step finish, then stops; a second Ctrl-C
stops at once. The state stays consistent either way.

Growth over a long run: rejected challengers' weights and training draws are deleted (their eval.json,
recipe.yaml and report.md stay; `keep_rejected` keeps everything), and so is every finished generation's
candidates.jsonl (the ledger keeps its counts); `benchmarks/soak.py` measures what remains.

The package: each step is a function `(workspace, config, generation) -> summary` in its own module
(synthesize, verify, rework, recipe, train, gate), `generation.Generation` is what a step knows of its
generation, `run` drives generation 0 and the generations after it (`touchstone run`), `command` runs a
single step of the current generation (`touchstone loop STEP`), `history` answers `touchstone status` and
`touchstone history`, `workspace` holds the layout, the lock and the clean-up, `ledger` the SQLite record.
"""
