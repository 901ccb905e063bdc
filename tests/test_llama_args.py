"""llama-server flags (server_config.extra_args) → in-process load and sampling settings."""

from __future__ import annotations

import shlex

import pytest

from localcode.backends.llama_args import FLAGS, GGML_TYPES, parse_llama_args
from localcode.backends.llama_cpp import resolve_template_file
from localcode.config import list_agents, resolve_agent
from localcode.errors import ConfigError


def p(text: str):
    return parse_llama_args(shlex.split(text))


def test_load_flags_map_onto_llama_params() -> None:
    a = p("-c 4096 -ngl 99 -b 1024 -ub 256 -ctk q8_0 -ctv q4_0 -t 6 -tb 8 --swa-full --no-mmap --mlock")
    assert a.load == {"n_ctx": 4096, "n_gpu_layers": 99, "n_batch": 1024, "n_ubatch": 256,
                      "type_k": GGML_TYPES["q8_0"], "type_v": GGML_TYPES["q4_0"], "n_threads": 6,
                      "n_threads_batch": 8, "swa_full": True, "use_mmap": False, "use_mlock": True}
    assert a.not_applicable == []


def test_long_spellings_and_equals_form() -> None:
    a = p("--ctx-size=8192 --n-gpu-layers all --batch-size 512 --cache-type-k=f16 --threads=3")
    assert a.load == {"n_ctx": 8192, "n_gpu_layers": -1, "n_batch": 512, "type_k": 1, "n_threads": 3}
    assert p("--gpu-layers 12").load["n_gpu_layers"] == 12


@pytest.mark.parametrize("text, value, load", [
    ("-fa", "on", True), ("-fa on", "on", True), ("--flash-attn off", "off", False),
    ("--flash-attn auto", "auto", None), ("-fa 1", "on", True),
])
def test_flash_attn_value_is_optional(text: str, value: str, load: bool | None) -> None:
    a = p(text + " --jinja")
    assert a.flash_attn == value
    assert a.load.get("flash_attn") is load


def test_sampling_defaults() -> None:
    a = p("--temp 0.2 --top-k 20 --top-p 0.8 --min-p 0.01 --repeat-penalty 1.1 --presence-penalty 0.5 "
          "--frequency-penalty 0.1 -s 7 -n 128")
    assert a.sampling == {"temperature": 0.2, "top_k": 20, "top_p": 0.8, "min_p": 0.01, "repeat_penalty": 1.1,
                          "presence_penalty": 0.5, "frequency_penalty": 0.1, "seed": 7, "max_tokens": 128}


def test_template_and_reasoning_flags() -> None:
    a = p("--jinja --chat-template-file x.jinja --chat-template-kwargs '{\"enable_thinking\":false}' "
          "--reasoning-format deepseek --no-context-shift")
    assert a.chat_template_file == "x.jinja"
    assert a.chat_template_kwargs == {"enable_thinking": False}
    assert a.reasoning_format == "deepseek"
    assert a.context_shift is False
    assert a.load == {} and a.sampling == {}


def test_rope_and_kv_overrides() -> None:
    a = p("--rope-scaling yarn --rope-scale 4 --rope-freq-base 10000 --yarn-orig-ctx 32768 "
          "--override-kv tokenizer.ggml.add_bos_token=bool:false --override-kv a.b=int:3")
    assert a.load["rope_scaling_type"] == 2
    assert a.load["rope_freq_scale"] == 0.25
    assert a.load["rope_freq_base"] == 10000.0
    assert a.load["yarn_orig_ctx"] == 32768
    assert a.load["kv_overrides"] == {"tokenizer.ggml.add_bos_token": False, "a.b": 3}


def test_server_only_flags_are_reported_not_applied() -> None:
    a = p("--host 0.0.0.0 --port 1235 --parallel 1 -np 2 --fit on --cont-batching --metrics --draft-max 1 "
          "--special -a mymodel --timeout 600 --fit")
    assert a.load == {} and a.sampling == {}
    assert a.not_applicable == ["--host 0.0.0.0", "--port 1235", "--parallel 1", "-np 2", "--fit on",
                                "--cont-batching", "--metrics", "--draft-max 1", "--special", "-a mymodel",
                                "--timeout 600", "--fit"]


@pytest.mark.parametrize("text, needle", [
    ("--frobnicate", "--frobnicate"),
    ("-c", "needs a value"),
    ("-c many", "integer"),
    ("-ctk q3_z", "q3_z"),
    ("--chat-template-kwargs {bad", "not valid JSON"),
    ("--chat-template-kwargs [1]", "JSON object"),
    ("--reasoning-format sometimes", "sometimes"),
    ("--flash-attn maybe", "maybe"),
])
def test_bad_flags_are_config_errors_naming_the_problem(text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=None) as e:
        p(text)
    assert needle in str(e.value)


def test_table_has_no_duplicate_spellings() -> None:
    names = [n for f in FLAGS for n in f.names]
    assert len(names) == len(set(names))


GGUF_AGENTS = [name for name, _ in list_agents() if name.startswith("gguf/")]


def test_every_reference_config_is_present() -> None:
    expected = {"gemma-3-270m", "glm-4.7-flash", "gpt-oss-120b-mxfp4", "qwen3-coder-next-q4km",
                "qwen3-coder-next-mxfp4", "qwen3-next-80b-q8", "minimax-m2.1-q8", "step-3.5-flash-q4km",
                "kimi-k2.5", "jan-v3-4b"}
    assert expected <= {n.split("/", 1)[1] for n in GGUF_AGENTS}


@pytest.mark.parametrize("name", GGUF_AGENTS)
def test_every_gguf_config_loads_and_maps(name: str) -> None:
    cfg = resolve_agent(name)
    assert cfg.backend == "llama_cpp"
    args = parse_llama_args(cfg.server_config.extra_args)
    assert cfg.server_config.context_window or args.load.get("n_ctx")
    assert cfg.server_config.model_path
    if args.chat_template_file:
        assert resolve_template_file(args.chat_template_file, cfg.source).is_file()
    # what the original tool meant by each flag survives the mapping
    extra = cfg.server_config.extra_args
    for flag, key in (("--cache-type-k", "type_k"), ("-ub", "n_ubatch"), ("--ubatch-size", "n_ubatch"),
                      ("--mlock", "use_mlock"), ("--swa-full", "swa_full")):
        if flag in extra:
            assert key in args.load, (flag, args.load)
    if "--parallel" in extra:
        assert "--parallel 1" in args.not_applicable
    from localcode.agent.tools.registry import ToolRegistry

    assert ToolRegistry.from_config(cfg).names()  # every tool name (old aliases included) resolves


def test_reference_settings_survive() -> None:
    gpt = resolve_agent("gguf/gpt-oss-120b-mxfp4")
    assert gpt.server_config.context_window == 131072
    assert gpt.server_config.hf_model == "ggml-org/gpt-oss-120b-GGUF/gpt-oss-120b-mxfp4-00001-of-00003.gguf"
    assert parse_llama_args(gpt.server_config.extra_args).reasoning_format == "auto"
    glm = resolve_agent("gguf/glm-4.7-flash")
    a = parse_llama_args(glm.server_config.extra_args)
    assert a.chat_template_kwargs == {"enable_thinking": False}
    assert a.sampling["repeat_penalty"] == 1.0
    assert (glm.temperature, glm.top_p, glm.top_k, glm.min_p) == (0.7, 1.0, 0, 0.01)
    q = resolve_agent("gguf/qwen3-coder-next-mxfp4")
    assert (q.temperature, q.max_tokens) == (0.0, 4096)
    assert parse_llama_args(q.server_config.extra_args).load["type_k"] == GGML_TYPES["q8_0"]
