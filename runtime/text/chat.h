/* SPDX-License-Identifier: MIT */
/*
 * chat.h - DeepSeek-V3.2's prompt format: a conversation to token ids (spec section 5.1).
 *
 * V3.2 ships no Jinja template but a Python encoder, encoding/encoding_dsv32.py; this module
 * follows its encode_messages(messages, thinking_mode, drop_thinking=True,
 * add_default_bos_token=True) rule for rule (chat.c cites each). In short:
 *
 *   <BOS>{system}<｜User｜>{user}<｜Assistant｜></think>{answer}<EOS><｜User｜>{user}<｜Assistant｜><think>
 *
 * Every user turn ends with "<｜Assistant｜>" then "<think>" (thinking mode, last user turn) or
 * "</think>"; an assistant turn after the last user turn writes "{reasoning}</think>" first in
 * thinking mode; earlier turns' reasoning is never shown. Tool results follow the assistant turn
 * that called the tools: "\n\n<function_results>\n<result>...</result>\n</function_results>\n\n"
 * then <think> or </think>.
 *
 * Encoding: the six markers (BOS, EOS, <｜User｜>, <｜Assistant｜>, <think>, </think>) become the
 * ids of the tokenizer's added tokens of that text, looked up by text; if the tokenizer has no such
 * added token, the marker stays text, which is what HF would make of the prompt string. The text
 * between two markers (template text and message content together) is encoded as one piece with
 * special tokens off, so a message that contains "<｜User｜>" cannot forge a turn.
 *
 * Note for multi-turn chat: in thinking mode the encoding of a conversation is not a prefix of
 * the encoding of the same conversation plus one more turn (the last user turn's <think> becomes
 * </think>, the reasoning disappears), so a KV cache can be reused only up to that point.
 */
#ifndef MT_CHAT_H
#define MT_CHAT_H

#include "runtime/base/status.h"
#include "runtime/text/tokenizer.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum mt_chat_role {
    MT_CHAT_SYSTEM,
    MT_CHAT_USER,
    MT_CHAT_ASSISTANT,
    MT_CHAT_TOOL, /* the result of one tool call, in the order the assistant made the calls */
};

/* One tool call of an assistant turn (OpenAI's tool_calls[i].function). */
struct mt_chat_tool_call {
    const char *name;
    const char *arguments; /* a JSON object, e.g. {"city": "Paris"}; integers past int64 too */
};

struct mt_chat_msg {
    enum mt_chat_role role;
    const char *content;                        /* NULL means "" */
    const char *reasoning;                      /* assistant: its reasoning_content, or NULL */
    const struct mt_chat_tool_call *tool_calls; /* assistant */
    size_t n_tool_calls;
    const char *tools; /* JSON array of OpenAI tools ({"type": "function", "function": {...}})
                        * to describe in the system prompt, or NULL: on a system message after
                        * its content; on msgs[0] of another role in an empty system prompt
                        * before it (so the caller adds no message, and an error's message
                        * index is the caller's own) */
    /*
     * Bytes of content and reasoning; 0 means the string ends at its NUL (strlen). A model's
     * reply may hold a NUL byte (byte-level BPE has a token for 0x00): give its length, so that
     * the next turn's prompt holds the reply whole, as the model wrote it.
     */
    size_t content_len;
    size_t reasoning_len;
    /* JSON text of a schema the reply must follow, or NULL: the template's "## Response Format"
     * section with it, after the tools, placed as they are */
    const char *response_format;
};

/*
 * The prompt of msgs[0..n) as token ids: *ids_out is malloc'ed, *n_out its length. thinking selects
 * thinking mode (<think> after the last user turn) or chat mode (</think>). Invalid conversations
 * (a tool result with no assistant tool call before it, an assistant turn after the last user
 * turn in thinking mode with neither reasoning nor tool calls, arguments that are not a JSON
 * object or give a key twice) give MT_ERR_INVAL with a message naming the message index.
 */
mt_status_t mt_chat_encode(struct mt_tokenizer *tok, const struct mt_chat_msg *msgs, size_t n,
                           bool thinking, int32_t **ids_out, size_t *n_out);

/*
 * The same prompt as the text encoding_dsv32.encode_messages returns (malloc'ed, NUL-ended; a
 * message holding a NUL byte puts one in the text too, which strlen would take for its end).
 */
mt_status_t mt_chat_render(const struct mt_chat_msg *msgs, size_t n, bool thinking,
                           char **text_out);

/*
 * JSON text as Python's json.dumps(value, ensure_ascii=False) writes it (", " and ": "
 * separators, shortest round-trip floats, integers past int64 digit for digit), which the
 * tool-call and tool-list formats use. A key given twice is refused, and so is a number past
 * 1e308 (jansson's real overflows; Python would write Infinity or an int of 309+ digits).
 * *json_out is malloc'ed.
 */
mt_status_t mt_chat_json_py(const char *json, char **json_out);

/* ---- the reply: its tool calls parsed back (chat_parse.c) ---------------------------------- */

/* "\n\n<｜DSML｜function_calls": where a reply's tool calls begin (what a stream holds back). */
extern const char mt_chat_tool_calls_start[];

struct mt_chat_parsed_calls {
    size_t content_len;              /* the reply's text before its calls (all of it if none) */
    struct mt_chat_tool_call *calls; /* owned: [n], names and arguments malloc'ed */
    size_t n;
};

/*
 * The tool calls that end a reply of len bytes (its text after </think>, without the end of
 * sentence), as encoding_dsv32.py parses them: each call's name and its arguments as a JSON
 * object text. A reply without the calls block gives n == 0 and content_len == len. One whose
 * block breaks the format (cut short, text after it, a key twice, a string="false" value that
 * is not JSON) gives MT_ERR_FORMAT and nothing held: the caller keeps the reply as text.
 * Release with mt_chat_parsed_calls_fini.
 */
mt_status_t mt_chat_parse_tool_calls(const char *text, size_t len,
                                     struct mt_chat_parsed_calls *out);
void mt_chat_parsed_calls_fini(struct mt_chat_parsed_calls *p);

/*
 * The start of a reply that must call a tool, as the model writes it: the calls block opened
 * ("\n\n<｜DSML｜function_calls>\n") and, with name (not NULL), that function's call opened too
 * ("<｜DSML｜invoke name=\"NAME\">\n"). It ends where V3.2's tokenizer ends a token in the
 * whole block (test_chat checks it), so the model continues as if it had written it: a server
 * puts it after the prompt (tool_choice "required" or a named function). name must be a plain
 * tool name (no quote). Returns malloc'ed text, NULL when out of memory.
 */
char *mt_chat_forced_call_text(const char *name);

#endif /* MT_CHAT_H */
