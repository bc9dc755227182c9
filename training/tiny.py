"""Tiny causal language models built offline, for tests and benchmarks.

Nothing can be downloaded from a model hub here, so every test and benchmark that needs a real
model (transformers, vLLM, TRL) builds one: a byte-level BPE tokenizer trained on ESConv train
text, a ChatML-style chat template, and a randomly initialised ``LlamaForCausalLM``. The result
is a standard Hugging Face folder that ``AutoTokenizer``, ``AutoModelForCausalLM`` and
``vllm.LLM`` all load. A random model writes gibberish; training happens elsewhere.

    python -m training.tiny --out var/tiny-xs --size xs

Builds are cached: a folder whose ``tiny.json`` records the same size, seed and format version
is returned at once.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from training.prompts import CARE_SYSTEM_PROMPT, SYSTEM_PROMPT

# Bump when the build changes in a way that makes older cached folders wrong.
FORMAT_VERSION = 3
MARKER = "tiny.json"

BOS = "<|bos|>"
EOS = "<|im_end|>"  # end of a chat turn: generation stops here
PAD = "<|pad|>"
IM_START = "<|im_start|>"
SPECIAL_TOKENS = [PAD, BOS, EOS, IM_START]

# ChatML. It uses only plain Jinja, so transformers' apply_chat_template and vLLM's chat both
# render it; vLLM tokenises the rendered prompt without adding special tokens, hence bos here.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@dataclass(frozen=True)
class TinySpec:
    """Shape of one size. head_dim = hidden / heads stays 64: vLLM's CPU attention needs >= 64."""

    vocab_size: int
    hidden_size: int
    num_attention_heads: int
    num_hidden_layers: int
    intermediate_size: int
    max_position_embeddings: int = 1024


SIZES: dict[str, TinySpec] = {
    "xs": TinySpec(4000, 128, 2, 2, 256),
    "s": TinySpec(8000, 256, 4, 4, 512),
    # ~60M parameters.
    "m": TinySpec(16000, 512, 8, 11, 2048),
}


def _esconv_train_texts(data_dir: Path | None) -> Iterator[str]:
    """Every utterance and situation of ESConv train, then the system prompts and CARE tags."""
    from training.datasets import load_dialogues

    for dialogue in load_dialogues("esconv", "train", data_dir=data_dir):
        if dialogue.situation:
            yield dialogue.situation
        for turn in dialogue.turns:
            yield turn.text
    # So the prompts and reasoning tags the models see become a few tokens each.
    for _ in range(50):
        yield SYSTEM_PROMPT
        yield CARE_SYSTEM_PROMPT
        yield (
            "<think><context>...</context><cognition>...</cognition><emotion>...</emotion>"
            '<plan strategy="Question">...</plan></think>'
        )


def _train_tokenizer(spec: TinySpec, data_dir: Path | None):
    """A byte-level BPE tokenizer wrapped as PreTrainedTokenizerFast, with the chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_esconv_train_texts(data_dir), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        model_max_length=spec.max_position_embeddings,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _is_complete(out_dir: Path, size: str, seed: int) -> bool:
    marker = out_dir / MARKER
    if not marker.is_file():
        return False
    try:
        meta = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return (
        meta.get("size") == size
        and meta.get("seed") == seed
        and meta.get("format_version") == FORMAT_VERSION
        and all((out_dir / name).is_file() for name in meta.get("files", []))
    )


def build_tiny_model(
    out_dir: Path, *, size: str = "xs", data_dir: Path | None = None, seed: int = 0
) -> Path:
    """Build (or reuse) a tiny Llama model and tokenizer in ``out_dir`` and return the folder.

    The folder is a standard Hugging Face model folder plus ``tiny.json`` (size, seed, shape,
    parameter count). If ``tiny.json`` already records the same size, seed and format version and
    its files are all present, nothing is rebuilt. Files are written to a temporary folder and
    moved in one by one with ``tiny.json`` last, so a reader never sees a half-built model as
    complete, and two processes building the same model at once both end with a valid folder.
    """
    if size not in SIZES:
        raise ValueError(f"size={size!r}: expected one of {sorted(SIZES)}")
    out_dir = Path(out_dir)
    if _is_complete(out_dir, size, seed):
        return out_dir

    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    spec = SIZES[size]
    tokenizer = _train_tokenizer(spec, data_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_attention_heads,
        head_dim=spec.hidden_size // spec.num_attention_heads,
        max_position_embeddings=spec.max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        # Untied output head and init std 1/sqrt(hidden): with tied embeddings and GPT-2's 0.02,
        # a random model's greedy output is one token repeated whatever the prompt, which makes
        # "backend A and backend B give the same output" tests meaningless.
        tie_word_embeddings=False,
        initializer_range=spec.hidden_size**-0.5,
        dtype="float32",
    )
    # Seed only this build's initialisation, not the caller's global generator.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        files = sorted(p.name for p in tmp.iterdir() if p.is_file())
        meta = {
            "size": size,
            "seed": seed,
            "format_version": FORMAT_VERSION,
            "spec": asdict(spec),
            "vocab_size": len(tokenizer),
            "parameters": sum(p.numel() for p in model.parameters()),
            "files": files,
        }
        (tmp / MARKER).write_text(json.dumps(meta, indent=2) + "\n")
        if _is_complete(out_dir, size, seed):
            return out_dir  # another process finished the same build meanwhile
        out_dir.mkdir(exist_ok=True)
        stale = out_dir / MARKER
        if stale.exists():
            stale.unlink()  # the folder is incomplete until the new marker lands
        for name in files:
            (tmp / name).chmod(0o644)  # some writers create 0600 files; models are shared
            os.replace(tmp / name, out_dir / name)
        os.replace(tmp / MARKER, out_dir / MARKER)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: ``python -m training.tiny --out DIR [--size xs|s|m]``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output model folder")
    parser.add_argument("--size", choices=sorted(SIZES), default="xs")
    parser.add_argument("--data-dir", type=Path, default=None, help="shared data folder")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    path = build_tiny_model(args.out, size=args.size, data_dir=args.data_dir, seed=args.seed)
    meta = json.loads((path / MARKER).read_text())
    print(f"{path}: size={meta['size']} seed={meta['seed']} parameters={meta['parameters']:,}")


if __name__ == "__main__":
    main()
