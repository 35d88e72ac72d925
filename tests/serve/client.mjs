// SPDX-License-Identifier: MIT
// client.mjs URL KEY MODEL - the official openai library against moetier serve: lists models,
// a chat completion, a streamed one (the same greedy text), a text completion, and the errors it
// maps (404 unknown model, 401 wrong key). Prints "PASS what" or "FAIL what: why" per check, for
// tests/test_serve_clients.sh to count. Only talks to URL (127.0.0.1), each call timed out.
import OpenAI from "openai";

const [url, key, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL: url + "/v1", apiKey: key, timeout: 30000, maxRetries: 0 });

async function check(what, fn) {
  try {
    const why = await fn();
    console.log(why === true ? `PASS ${what}` : `FAIL ${what}: ${why}`);
  } catch (err) {
    console.log(`FAIL ${what}: ${err && err.message ? err.message : err}`);
  }
}

const messages = [{ role: "user", content: "Hello from the openai library" }];
let full = null;

await check("openai: models.list() names the model", async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  return (ids.length === 1 && ids[0] === model) || `got ${JSON.stringify(ids)}`;
});
await check("openai: chat.completions.create() returns a reply and usage", async () => {
  const r = await client.chat.completions.create({ model, messages, max_tokens: 10,
                                                   temperature: 0 });
  full = r.choices[0].message.content;
  return (r.object === "chat.completion" && typeof full === "string" &&
          r.choices[0].message.role === "assistant" && r.usage.completion_tokens === 10 &&
          r.choices[0].finish_reason === "length") || JSON.stringify(r);
});
await check("openai: a streamed chat completion gives the same text in chunks", async () => {
  const stream = await client.chat.completions.create({ model, messages, max_tokens: 10,
                                                        temperature: 0, stream: true });
  let text = "", chunks = 0, finish = null;
  for await (const c of stream) {
    chunks++;
    if (c.choices.length && c.choices[0].delta.content) text += c.choices[0].delta.content;
    if (c.choices.length && c.choices[0].finish_reason) finish = c.choices[0].finish_reason;
  }
  return (chunks >= 3 && text === full && finish === "length") ||
    `${chunks} chunks, finish ${finish}, '${text}' vs '${full}'`;
});
await check("openai: completions.create() returns text", async () => {
  const r = await client.completions.create({ model, prompt: "Once upon a time",
                                              max_tokens: 6, temperature: 0 });
  return (r.object === "text_completion" && typeof r.choices[0].text === "string" &&
          r.usage.completion_tokens === 6) || JSON.stringify(r);
});
await check("openai: an unknown model raises NotFoundError", async () => {
  try {
    await client.chat.completions.create({ model: "no-such-model", messages, max_tokens: 1 });
    return "no error";
  } catch (err) {
    return (err instanceof OpenAI.NotFoundError && err.code === "model_not_found") ||
      `${err.constructor.name} ${err.status}`;
  }
});
await check("openai: a wrong key raises AuthenticationError", async () => {
  const bad = new OpenAI({ baseURL: url + "/v1", apiKey: "wrong", timeout: 10000,
                           maxRetries: 0 });
  try {
    await bad.models.list();
    return "no error";
  } catch (err) {
    return err instanceof OpenAI.AuthenticationError || `${err.constructor.name} ${err.status}`;
  }
});
