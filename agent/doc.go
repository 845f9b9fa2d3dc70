// Package agent is the DeepSeek-V3.2 agent runtime: the tool-use loop with
// thinking, the tools it calls, and test-time context management.
//
// Reading order:
//
//   - message.go: Message, Request, Response and the one-method Client.
//   - http.go, sse.go: HTTPClient, OpenAI chat completions over net/http,
//     plain or streamed, with reasoning_content both ways.
//   - retention.go: the reasoning-retention rule (agent.md §2) and
//     PromptClient, for when the runtime renders prompts itself.
//   - tool.go, schema.go: the Tool interface, the Toolbox that turns any
//     model call into a result (malformed arguments included), and a small
//     JSON-schema validator.
//   - loop.go: Agent, the loop with step and token budgets.
//   - context.go: ContextPolicy with Summary and DiscardToolHistory
//     (Discard-75%, Discard-all); parallel.go: the parallel-scaling baseline.
//   - trajectory.go: trajectories as JSON lines, and a Printer for them.
//
// Tools live in subpackages: sandbox (python and bash under bubblewrap),
// workspace (files), search (offline BM25 search) and mcp (any MCP server).
// agenttest is a scripted OpenAI-compatible endpoint for tests.
//
// Glossary: a step is one model call; a tool round is an assistant message
// with tool calls plus all its results; a reset is one context-policy rewrite.
//
// What agent deliberately does not do: it does not tokenise or render the
// DeepSeek chat format (chat does; PromptClient takes it as a Format), it does
// not import the server's wire types, it never retries a tool, and it never
// deletes reasoning from the stored history — the retention rule is applied
// when a prompt is rendered, by the server or by PromptClient.
package agent
