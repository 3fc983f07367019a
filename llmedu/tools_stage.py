"""The speedrun's ``tools`` stage: teach the chat model to call a calculator and a search tool, and measure it (lesson 06).

1. The chat model gains the four tool markers (:func:`llmedu.vocab.add_special_tokens`).
2. It is fine-tuned, with the same SFT loop, on tool conversations made from
   the world (:mod:`llmedu.tool_data`), lesson 04's conversations mixed in
   and a little pretraining text replayed.
3. The same questions are asked without and with tools
   (:mod:`llmedu.tool_eval`): arithmetic, the late people (whose pages only
   search can reach) and people known from pretraining.
"""

from __future__ import annotations

import shutil
import time

from llmedu.plots import save_plot
from llmedu.search import SearchIndex, hit_at_1
from llmedu.sft import sft_config
from llmedu.stats import wilson_interval
from llmedu.tokenizer import TOOL_SPECIAL_TOKENS
from llmedu.tool_data import prepare_tool_sft
from llmedu.tool_eval import evaluate_tools, tool_counts, tool_summary
from llmedu.tools import default_tools, search_store
from llmedu.train import train


def tools_stage(run) -> dict:
    """Fine-tune ``run``'s chat model to use tools; figures for report.json."""
    z, world = run.sizes, run.state["world"]
    folder = run.out_dir / "tools"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    start_file, train_path, _, data = prepare_tool_sft(folder, run.state["sft_dir"] / "model.safetensors", world,
                                                       seed=run.seed, mix_in=run.state["sft_data"].train,
                                                       **data_sizes(z))
    config = sft_config(start_file, train_path, folder / "model", steps=z["tools_steps"], lr=z["tools_lr"],
                        batch_size=z["tools_batch_size"], seed=run.seed, replay=run.state["world_path"],
                        replay_fraction=z["tools_replay_fraction"])
    started = time.perf_counter()
    result = train(config)
    wall_s = time.perf_counter() - started
    model = (result.params, result.model_config, result.tokenizer)
    judged = evaluate_tools(*model, data.eval, world, default_tools(world, result.tokenizer, config.seq_len))
    figures = tool_summary(judged)
    figures.update(_retrieval(world, data.eval, judged))
    figures.update({"tools_wall_s": round(wall_s, 3), "tools_steps": result.step,
                    "tools_train_conversations": sum(1 for _ in open(train_path, encoding="utf-8")),
                    "tools_eval_questions": len(data.eval), "tools_vocab_size": result.model_config.vocab_size,
                    "tools_data_sizes": data_sizes(z), "tools_too_long": data.too_long})
    plot = _plot(run.out_dir, figures)
    run.notes.append(_notes(figures, tool_counts(judged), judged, plot))
    run.state.update(tool_params=result.params, tool_dir=folder / "model")
    return figures


def data_sizes(z: dict) -> dict:
    """The speedrun sizes' tool-data counts, as :func:`llmedu.tool_data.make_tool_data` takes them."""
    sizes = {name: z[f"tools_{name[2:]}"] for name in ("n_arithmetic", "n_searched", "n_no_page", "n_eval_arithmetic",
                                                       "n_eval_known")}
    return {**sizes, "questions_per_person": z["tools_questions_per_person"]}


def _retrieval(world, examples: list, judged: list) -> dict:
    """Search hit@1 on the late-people questions: the question as the query, and the model's own queries."""
    index = SearchIndex(search_store(world))
    late = [e for e in examples if e.group == "late_people"]
    asked = [(call[len("search("):-1], j.question) for j in judged if j.group == "late_people" and j.tools_on
             for call, _ in j.calls if call.startswith("search(") and call.endswith(")")]
    subject = {e.conversation[0]["content"]: e.subject for e in late}
    model_hits = hit_at_1(index, [query for query, _ in asked], [subject[q] for _, q in asked]) if asked else None
    return {"tools_retrieval_hit1": round(hit_at_1(index, [e.conversation[0]["content"] for e in late],
                                                   [e.subject for e in late]), 4),
            "tools_retrieval_hit1_model_queries": None if model_hits is None else round(model_hits, 4),
            "tools_store_documents": len(index.documents)}


ROWS = [("arithmetic (3-digit x 2-digit, 4-digit sums)", "arith_acc_without", "arith_acc_with"),
        ("late people (pages only in the search store)", "late_acc_without", "late_acc_with"),
        ("people known from pretraining", "known_acc_without_tools", "known_acc_with_tools")]


def _plot(out_dir, figures: dict) -> str:
    def draw(ax):
        for offset, (column, label) in enumerate(((1, "without tools"), (2, "with tools"))):
            values = [100 * (figures[f"tools_{row[column]}"] or 0) for row in ROWS]
            ax.bar([i + 0.4 * offset for i in range(len(ROWS))], values, width=0.4, label=label)
        ax.set_xticks([i + 0.2 for i in range(len(ROWS))], ["arithmetic", "late people", "known people"])
        ax.set_ylabel("questions answered right (%)")
        ax.set_ylim(0, 100)
        ax.legend()

    return save_plot(out_dir, "tools_accuracy.png", draw)


def _cell(counts: dict, key: str) -> str:
    k, n = counts[key]
    if not n:
        return "–"
    low, high = wilson_interval(k, n)
    return f"{100 * k / n:.1f}% ({100 * low:.0f}–{100 * high:.0f}%)"


def _notes(figures: dict, counts: dict, judged: list, plot: str) -> str:
    lines = ["## Tool use: a calculator and search\n",
             f"The chat model with {len(TOOL_SPECIAL_TOKENS)} new special tokens (vocabulary "
             f"{figures['tools_vocab_size']}), fine-tuned for {figures['tools_steps']} steps in "
             f"{figures['tools_wall_s']:.1f} s on {figures['tools_train_conversations']:,} conversations (tool use "
             "plus lesson 04's, and replayed pretraining text). Each question asked greedily without tools and with "
             "them; 95% Wilson intervals over the questions asked.\n",
             "| questions | without tools | with tools | questions |", "|---|---|---|---|"]
    lines += [f"| {label} | {_cell(counts, off)} | {_cell(counts, on)} | {counts[on][1]} |" for label, off, on in ROWS]
    lines += ["", f"- late people without tools, answered \"I don't know\": {_cell(counts, 'late_idk_without')}",
              f"- a tool called for a known person (needless): {_cell(counts, 'needless_call_rate')}",
              f"- search hit@1 on the late-people questions: {100 * figures['tools_retrieval_hit1']:.1f}% with the "
              "question as the query" + ("" if figures["tools_retrieval_hit1_model_queries"] is None else
                                        f", {100 * figures['tools_retrieval_hit1_model_queries']:.1f}% with the "
                                        "model's own queries") + f" ({figures['tools_store_documents']} documents)",
              "", f"![accuracy without and with tools]({plot})", "", "### A few replies with tools", ""]
    shown = [j for j in judged if j.tools_on]
    lines += [f"- `{j.question}` -> " + "".join(f"[call: `{c}` -> `{r[:60]}`] " for c, r in j.calls)
              + f"`{j.answer}` ({j.outcome})" for j in shown[:: max(1, len(shown) // 8)]]
    return "\n".join(lines) + "\n"
