// A real client for the server test (TestNodeSDK): the openai npm package
// against a running `dsv32 serve`. Usage: node client.mjs BASE_URL MODEL.
// Prints one JSON object with what each call returned.
import OpenAI from "openai";

const [baseURL, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0 });
const messages = [{ role: "user", content: "Hello from Node!" }];
const common = { model, messages, max_tokens: 10, seed: 11, thinking: { type: "enabled" } };
const out = {};

const plain = await client.chat.completions.create(common);
out.plain = {
  content: plain.choices[0].message.content,
  reasoning: plain.choices[0].message.reasoning_content ?? "",
  finish: plain.choices[0].finish_reason,
  usage: plain.usage,
};

const stream = await client.chat.completions.create({ ...common, stream: true, stream_options: { include_usage: true } });
out.streamed = { content: "", reasoning: "", finish: "", chunks: 0, usage: null };
for await (const chunk of stream) {
  out.streamed.chunks++;
  if (chunk.usage) out.streamed.usage = chunk.usage;
  for (const c of chunk.choices) {
    if (c.delta.content) out.streamed.content += c.delta.content;
    if (c.delta.reasoning_content) out.streamed.reasoning += c.delta.reasoning_content;
    if (c.finish_reason) out.streamed.finish = c.finish_reason;
  }
}

async function failure(params) {
  try {
    await client.chat.completions.create(params);
    return { status: 200, code: "" };
  } catch (err) {
    return { status: err.status, code: err.code ?? err.error?.code ?? "" };
  }
}
out.notFound = await failure({ ...common, model: "no-such-model" });
out.overflow = await failure({ ...common, max_tokens: 1000000 });

const models = await client.models.list();
out.models = models.data.map((m) => m.id);

console.log(JSON.stringify(out));
