// Package env is what the RL loop trains on: verifiable tasks that generate
// problems, and rewards that score a model's completions of them (rl.md §9,
// §11). docs/tasks.md describes the ladder and the reward formulas.
//
// Tasks. A Task generates Examples from a *rand.Rand, deterministically: a
// prompt (a user message, or a whole conversation), a reference answer,
// metadata, and a Verifier that grades any extracted answer as Correct, Wrong
// or Malformed. Problems are split into Train and Test by a hash of their
// canonical form (SplitOf), so the held-out split never overlaps training,
// for any seed. The ladder, by rl.md §11's levels:
//
//   - T0 Bandit: one prompt, one right digit.
//   - T1 Sequence: copy, reverse, sort a string of digits or letters.
//   - T2 Arithmetic: multi-digit addition, subtraction, multiplication.
//   - T3 Countdown: reach a target with given numbers and + − × ÷.
//   - T4 Mix: T1–T3 in one stream, each example graded by its own verifier.
//
// Ladder and Lookup are the explicit table of these by name, with knobs, for
// the CLI ("reverse:min=8,max=16").
//
// Answers. Grade parses a completion (chat.Parse in its mode), extracts the
// final answer from the content (ExtractAnswer: \boxed{}, <answer>, an
// "Answer:" line, or the last line) and returns the verifier's verdict; the
// held-out accuracy is the share of Correct.
//
// Rewards. A Reward scores an (Example, Completion) pair and explains the
// score in Details. Built-ins: Outcome (the verifier's 1 / FormatCredit / 0),
// Positional (per-position credit for T1), Format (well-formed thinking and
// tool calls), Length (DAPO's soft overlong penalty), Language (the share of
// words in the prompt's script), and Sum, the weighted combination whose
// Details keep every component for logging. Rewards never panic and never
// fail on completion text; bad text scores low.
//
// Reading order: task.go (Split, Example, Verdict, Task), sequence.go,
// arith.go, countdown.go (with its expression parser), ladder.go (Bandit, Mix,
// the registry), answer.go (ExtractAnswer), reward.go.
//
// What the package deliberately does not do:
//
//   - It knows nothing of tokens or models: completions arrive as text, and
//     the token count for Length is the caller's.
//   - It runs no GRPO: advantages, the loss and the loop are package rl's.
//   - It has no model-graded (rubric) reward yet; the Reward interface's ctx
//     and error are there for one.
//   - It does not evaluate answers with anything but its own parser: no eval,
//     no code execution, no floating point in Countdown.
//   - It does not dedupe within a split: a long sample may repeat a problem.
//   - Prompts are terse ("reverse 38291") for tiny models with small
//     vocabularies, not natural-language instructions.
package env
