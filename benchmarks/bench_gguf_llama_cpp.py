"""The shipped models exported as GGUF and run by llama.cpp: do they behave as in llmedu? (issue 16)

    pip install llama-cpp-python==0.3.36     # builds llama.cpp: minutes on 2 cores
    python benchmarks/bench_gguf_llama_cpp.py

For each shipped model and dtype (f32, f16, q8_0) it prints whether llama.cpp's
tokenizer gives our ids on a mixed text, and how many of GREEDY_TOKENS greedy
tokens llama.cpp shares with ``llmedu.generate`` (temperature 0) from each
prompt; for the chat model in f32 it also asks a few questions through
llama-cpp-python's chat completion (which renders the file's
``tokenizer.chat_template``) and through ``llmedu.chat``. No timing: these are
equality figures, not speeds.
"""

import sys
import tempfile
from pathlib import Path

import llama_cpp

from llmedu.chat import chat
from llmedu.checkpoint import load_params
from llmedu.data import tokenizer_from_text
from llmedu.generate import generate
from llmedu.gguf_export import DTYPES, agreement, export_gguf, llama_cpp_greedy

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from test_llama_cpp import GREEDY_TOKENS, MIXED_TEXT, PROMPTS  # noqa: E402  (one text and prompt list for both)



def world_questions() -> list[str]:
    """Questions about the world the shipped models read (seed 1337, 300 people: ``llmedu sft``'s defaults)."""
    from llmedu.world import make_world

    world = make_world(1337, n_people=300)
    first, second, city = world.people[0], world.people[1], world.cities[0]
    return [f"Where did {first.name} live?", f"When was {second.name} born?",
            f"Which river flows through {city.name}?", f"What is the vault code of {city.name}?"]


def report(name: str, folder: Path) -> None:
    source = ROOT / "assets" / f"{name}_model.safetensors"
    params, config, metadata = load_params(source)
    tokenizer = tokenizer_from_text(metadata["tokenizer"])
    for dtype in DTYPES:
        out = folder / f"{name}-{dtype}.gguf"
        export_gguf(source, out, dtype)
        llm = llama_cpp.Llama(model_path=str(out), n_ctx=config.max_seq_len, logits_all=True, verbose=False,
                              n_threads=1)
        same = llm.tokenize(MIXED_TEXT.encode("utf-8"), add_bos=False, special=False) == tokenizer.encode(MIXED_TEXT)
        lengths = []
        for prompt in PROMPTS:
            ids = tokenizer.encode(prompt)
            ours = list(generate(params, config, ids, max_new_tokens=GREEDY_TOKENS, temperature=0.0))
            lengths.append(agreement(llama_cpp_greedy(llm, ids, GREEDY_TOKENS), ours))
        print(f"{name} {dtype:5} {out.stat().st_size:>9,} bytes  tokenizer ids equal: {same}  "
              f"greedy agreement (of {GREEDY_TOKENS}) per prompt: {lengths}", flush=True)
        if name == "chat" and dtype == "f32":
            for question in world_questions():
                turns = [{"role": "user", "content": question}]
                ours = chat(params, config, tokenizer, turns, max_new_tokens=64)
                theirs = llm.create_chat_completion(messages=turns, temperature=0.0, top_k=1,
                                                    max_tokens=64)["choices"][0]["message"]["content"]
                print(f"  {question!r}\n    llmedu chat: {ours!r}\n    llama.cpp:   {theirs!r}  same: {ours == theirs}")


def main() -> None:
    print(f"llama-cpp-python {llama_cpp.__version__}")
    with tempfile.TemporaryDirectory() as folder:
        for name in ("base", "chat"):
            report(name, Path(folder))


if __name__ == "__main__":
    main()
