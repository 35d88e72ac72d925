// SPDX-License-Identifier: MIT
// client.mjs URL KEY MODEL - the official openai library against moetier serve: lists models,
// a chat completion, a streamed one (the same greedy text), a text completion, the stream
// helper's accumulated reply with n = 2 and logprobs, a named tool_choice (a stream with
// keep-alive comments), echo with logprobs, JSON mode and a strict json_schema, and the errors
// it maps (404 unknown model, 401 wrong key).
// Prints "PASS what" or "FAIL what: why" per check, for tests/test_serve_clients.sh to count.
// Only talks to URL (127.0.0.1), each call timed out.
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
await check("openai: the stream helper's finalChatCompletion() with n = 2 and logprobs equals " +
            "the unstreamed reply", async () => {
  const params = { model, messages, max_tokens: 6, temperature: 0, n: 2, logprobs: true,
                   top_logprobs: 2 };
  const whole = await client.chat.completions.create(params);
  const fin = await client.chat.completions.stream(params).finalChatCompletion();
  const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
  return (fin.choices.length === 2 && whole.choices.length === 2 &&
          fin.choices.every((c, i) => c.index === i &&
                            c.message.content === whole.choices[i].message.content &&
                            same(c.logprobs.content, whole.choices[i].logprobs.content) &&
                            c.logprobs.content.length > 0 &&
                            c.logprobs.content[0].top_logprobs.length === 2)) ||
    `${JSON.stringify(fin.choices)} vs ${JSON.stringify(whole.choices)}`;
});
await check("openai: a named tool_choice is accepted; the forced call's start begins the " +
            "answer, also through the stream helper over a stream with keep-alive comments",
            async () => {
  const tools = [{ type: "function", function: { name: "get_weather",
                   parameters: { type: "object", properties: { city: { type: "string" } } } } }];
  // 300 tokens held back (a call block goes out whole): the server, run with
  // --stream-keepalive 0.02, sends keep-alive comments meanwhile; the library must skip them.
  // A sanitizer build takes seconds for them: a longer timeout than the other calls'.
  const params = { model, messages, max_tokens: 300, ignore_eos: true, temperature: 0, tools,
                   tool_choice: { type: "function", function: { name: "get_weather" } } };
  const slow = { timeout: 120000 };
  const r = await client.chat.completions.create(params, slow);
  const fin = await client.chat.completions.stream(params, slow).finalChatCompletion();
  const raw = await (await fetch(url + "/v1/chat/completions", {
    method: "POST", signal: AbortSignal.timeout(120000),
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${key}` },
    body: JSON.stringify({ ...params, stream: true }) })).text();
  const keepalives = raw.split("\n").filter((l) => l === ": keep-alive").length;
  const start = "\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"get_weather\">\n";
  const c = r.choices[0];
  // a random model does not finish the call: the block comes back as text
  return (typeof c.message.content === "string" && c.message.content.startsWith(start) &&
          fin.choices[0].message.content === c.message.content &&
          fin.choices[0].finish_reason === "length" && keepalives >= 1) ||
    `${keepalives} keep-alives; ${JSON.stringify(fin.choices[0].finish_reason)}; ` +
    JSON.stringify(r).slice(0, 300);
});
await check("openai: completions.create() with echo and logprobs scores the prompt", async () => {
  const r = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 0,
                                              echo: true, logprobs: 1 });
  const l = r.choices[0].logprobs;
  return (l.token_logprobs[0] === null && l.tokens.length === r.usage.prompt_tokens &&
          l.token_logprobs.slice(1).every((x) => typeof x === "number" && x <= 0) &&
          r.choices[0].text.endsWith("Once upon a time")) || JSON.stringify(r);
});
await check("openai: response_format json_object: each answer that ends by itself is an " +
            "object to JSON.parse", async () => {
  // a bias towards '"' (id 4) makes the random model close its strings, and so its objects
  const r = await client.chat.completions.create({
    model, messages: [{ role: "user", content: "Reply in JSON" }], max_tokens: 80, n: 4,
    temperature: 1, seed: 3, logit_bias: { 4: 5 }, response_format: { type: "json_object" } });
  const done = r.choices.filter((c) => c.finish_reason === "stop");
  const objects = done.filter((c) => {
    const v = JSON.parse(c.message.content);
    return typeof v === "object" && v !== null && !Array.isArray(v);
  });
  return (done.length > 0 && objects.length === done.length) || JSON.stringify(r.choices);
});
await check("openai: a strict json_schema response_format: each answer that ends by itself " +
            "has the schema's keys and types", async () => {
  const schema = { type: "object", additionalProperties: false, required: ["name", "tags"],
                   properties: { name: { type: "string" },
                                 tags: { type: "array", items: { enum: ["a", "b"] } } } };
  const r = await client.chat.completions.create({
    model, messages: [{ role: "user", content: "Describe it" }], max_tokens: 300, n: 4,
    temperature: 1, seed: 5, logit_bias: { 4: 5 },
    response_format: { type: "json_schema", json_schema: { name: "thing", strict: true,
                                                           schema } } });
  const done = r.choices.filter((c) => c.finish_reason === "stop");
  const fit = done.filter((c) => {
    const v = JSON.parse(c.message.content);
    return Object.keys(v).join() === "name,tags" && typeof v.name === "string" &&
      Array.isArray(v.tags) && v.tags.every((t) => t === "a" || t === "b");
  });
  return (done.length > 0 && fit.length === done.length) || JSON.stringify(r.choices);
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
