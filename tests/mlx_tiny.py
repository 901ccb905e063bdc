"""Build a tiny MLX chat model on disk, for tests that cannot download one.

``make_tiny_model(folder)`` writes what ``mlx_lm.load`` reads from a Hugging Face MLX
repository: ``config.json``, ``model.safetensors`` (random weights, seeded), and a
byte-level BPE tokenizer built with the ``tokenizers`` library (``tokenizer.json`` +
``tokenizer_config.json`` carrying a chat template with tools). The weights are random,
so the model writes gibberish: it proves mechanics (loading, templates, streaming,
prompt-cache reuse), never skill.

Two architectures: ``qwen2`` (plain attention: a trimmable KV cache) and ``qwen3_next``
(the architecture of Qwen3-Coder-Next: linear-attention layers whose cache cannot be
trimmed). Templates: ``hermes`` (Qwen2.5 ``<tool_call>`` JSON, with Qwen3's ``enable_thinking``
switch and an ``open_think`` switch that opens ``<think>`` for the model) and
``qwen3_coder`` (``<tool_call><function=…><parameter=…>`` XML) are read by mlx-lm's own
tool parsers ``json_tools`` and ``qwen3_coder``; ``hermes_plain`` is a Hermes template
mlx-lm infers no parser for, so localcode's ``tool_parsers`` take over.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

Arch = Literal["qwen2", "qwen3_next"]
TemplateName = Literal["hermes", "hermes_plain", "qwen3_coder"]

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
"""Control tokens: never split, removed by ``skip_special_tokens``."""
MARKUP_TOKENS = ["<tool_call>", "</tool_call>", "<think>", "</think>"]
"""Single tokens as in Qwen's vocabularies, but kept in decoded text (special=False)."""

HERMES_TEMPLATE = """\
{%- if tools %}
{{- '<|im_start|>system\\n' }}
{%- if messages[0].role == 'system' %}{{- messages[0].content + '\\n\\n' }}{%- endif %}
{{- '# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n<tools>' }}
{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}
{{- '\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\\n</tool_call><|im_end|>\\n' }}
{%- elif messages[0].role == 'system' %}
{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}
{%- endif %}
{%- for message in messages %}
{%- if message.role == 'user' or (message.role == 'assistant' and not message.tool_calls) %}
{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}
{%- elif message.role == 'assistant' %}
{{- '<|im_start|>assistant' }}
{%- if message.content %}{{- '\\n' + message.content }}{%- endif %}
{%- for tool_call in message.tool_calls %}
{%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}
{{- '\\n<tool_call>\\n{\"name\": \"' + tool_call.name + '\", \"arguments\": ' + (tool_call.arguments | tojson) + '}\\n</tool_call>' }}
{%- endfor %}
{{- '<|im_end|>\\n' }}
{%- elif message.role == 'tool' %}
{{- '<|im_start|>user\\n<tool_response>\\n' + message.content + '\\n</tool_response><|im_end|>\\n' }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}
{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}
{%- elif open_think is defined and open_think %}{{- '<think>\\n' }}{%- endif %}
{%- endif %}
"""

QWEN3_CODER_TEMPLATE = """\
{%- if messages[0].role == 'system' %}{%- set system_message = messages[0].content %}{%- set loop_messages = messages[1:] %}
{%- else %}{%- set loop_messages = messages %}{%- endif %}
{%- if system_message is defined or tools %}
{{- '<|im_start|>system\\n' }}
{%- if system_message is defined %}{{- system_message }}{%- endif %}
{%- if tools %}
{{- '\\n\\n# Tools\\n\\nYou have access to the following functions:\\n\\n<tools>' }}
{%- for tool in tools %}{%- set tool = tool.function if tool.function is defined else tool %}
{{- '\\n<function>\\n<name>' + tool.name + '</name>' }}
{%- if tool.description %}{{- '\\n<description>' + tool.description + '</description>' }}{%- endif %}
{{- '\\n<parameters>' }}
{%- for name, spec in (tool.parameters.properties | default({})) | items %}
{{- '\\n<parameter>\\n<name>' + name + '</name>\\n<type>' + (spec.type | default('string')) + '</type>\\n</parameter>' }}
{%- endfor %}
{{- '\\n</parameters>\\n</function>' }}
{%- endfor %}
{{- '\\n</tools>\\n\\nIf you choose to call a function ONLY reply in the following format with NO suffix:\\n\\n<tool_call>\\n<function=example_function_name>\\n<parameter=example_parameter_1>\\nvalue_1\\n</parameter>\\n</function>\\n</tool_call>' }}
{%- endif %}
{{- '<|im_end|>\\n' }}
{%- endif %}
{%- for message in loop_messages %}
{%- if message.role == 'assistant' and message.tool_calls %}
{{- '<|im_start|>assistant' }}
{%- if message.content %}{{- '\\n' + message.content }}{%- endif %}
{%- for tool_call in message.tool_calls %}
{%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}
{{- '\\n<tool_call>\\n<function=' + tool_call.name + '>\\n' }}
{%- for args_name, args_value in tool_call.arguments | items %}
{{- '<parameter=' + args_name + '>\\n' }}
{%- set args_value = args_value if args_value is string else args_value | tojson %}
{{- args_value + '\\n</parameter>\\n' }}
{%- endfor %}
{{- '</function>\\n</tool_call>' }}
{%- endfor %}
{{- '<|im_end|>\\n' }}
{%- elif message.role == 'tool' %}
{{- '<|im_start|>user\\n<tool_response>\\n' + message.content + '\\n</tool_response><|im_end|>\\n' }}
{%- else %}
{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}
"""

HERMES_PLAIN_TEMPLATE = HERMES_TEMPLATE.replace("tool_call.name", "tool_call['name']")
"""The Hermes format written so that mlx-lm infers no tool parser: localcode's own parsers take over."""

TEMPLATES: dict[str, str] = {
    "hermes": HERMES_TEMPLATE,
    "hermes_plain": HERMES_PLAIN_TEMPLATE,
    "qwen3_coder": QWEN3_CODER_TEMPLATE,
}

_CORPUS = [
    "You are a helpful coding assistant. Read the files, then write the solution.",
    "def solve(x):\n    return x + 1\n",
    '{"name": "read", "arguments": {"path": "main.py"}}',
    "<function=read>\n<parameter=path>\nmain.py\n</parameter>\n</function>",
    "the tool result: ok: wrote 12 lines to solution.py",
    "function, parameter, arguments, description, properties, required, string, integer, object, type",
    "Write the file. Edit the file. List the directory. Search the text. Finish the task.",
]


def _build_tokenizer(vocab_size: int) -> "object":
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS],
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in MARKUP_TOKENS])
    return tok


def _model_config(arch: Arch, vocab_size: int, eos_id: int) -> dict[str, object]:
    common: dict[str, object] = {
        "model_type": arch,
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "intermediate_size": 128,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-6,
        "vocab_size": vocab_size,
        "max_position_embeddings": 4096,
        "rope_theta": 10000.0,
        "tie_word_embeddings": True,
        "eos_token_id": eos_id,
    }
    if arch == "qwen3_next":
        common.update(
            num_hidden_layers=4,
            head_dim=16,
            linear_num_value_heads=2,
            linear_num_key_heads=2,
            linear_key_head_dim=16,
            linear_value_head_dim=16,
            linear_conv_kernel_dim=4,
            num_experts=4,
            num_experts_per_tok=2,
            decoder_sparse_step=1,
            shared_expert_intermediate_size=64,
            mlp_only_layers=[],
            moe_intermediate_size=32,
            partial_rotary_factor=0.25,
            full_attention_interval=2,
        )
    return common


def make_tiny_model(
    folder: Path,
    arch: Arch = "qwen2",
    template: TemplateName = "hermes",
    vocab_size: int = 400,
    seed: int = 0,
    chat_template: str | None = None,
) -> Path:
    """Write a tiny random-weight MLX model into ``folder`` and return the folder.

    ``chat_template`` (template text) replaces the named ``template``, e.g. a real one.
    """
    import mlx.core as mx
    from mlx.utils import tree_flatten

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok = _build_tokenizer(vocab_size)
    tok.save(str(folder / "tokenizer.json"))
    n_vocab = tok.get_vocab_size()
    eos_id = tok.token_to_id("<|im_end|>")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "model_max_length": 32768,
        "clean_up_tokenization_spaces": False,
        "chat_template": chat_template or TEMPLATES[template],
    }, indent=1))

    config = _model_config(arch, n_vocab, eos_id)
    (folder / "config.json").write_text(json.dumps(config, indent=1))

    import importlib

    module = importlib.import_module(f"mlx_lm.models.{arch}")
    mx.random.seed(seed)
    model = module.Model(module.ModelArgs.from_dict(config))
    weights = dict(tree_flatten(model.parameters()))
    mx.eval(weights)
    mx.save_safetensors(str(folder / "model.safetensors"), weights)
    return folder
