"""``llmedu rlhf``: comparisons, a reward model, DPO, best-of-n and GRPO from the command line (lesson 05).

    llmedu rlhf comparisons --out runs/rlhf/comparisons.jsonl     # sample replies, let the labeller choose
    llmedu rlhf reward-model --comparisons FILE --out runs/rm      # Bradley–Terry on the pairs
    llmedu rlhf dpo --comparisons FILE --out runs/dpo --beta 0.1   # the chat model, tuned on the pairs
    llmedu rlhf best-of-n --reward-model runs/rm                   # proxy vs gold reward as n grows
    llmedu rlhf grpo --out runs/grpo                               # self-improvement on checkable year questions

The trainers are the one training loop (``llmedu.train``) with another task:
checkpoints, ``--resume`` and progress as for ``llmedu sft``. Comparisons can
come from any JSON Lines file of ``prompt``/``chosen``/``rejected``
(``llmedu.preference``); a malformed line is reported before anything is trained.
"""

from __future__ import annotations

import sys
import time


def _default_model(path):
    if path is not None:
        return path
    from llmedu.chat_model import ASSETS, MODEL_NAME

    return str(ASSETS / MODEL_NAME)


def _comparisons(args) -> int:
    from llmedu.chat_model import eval_questions
    from llmedu.preference import ceiling, make_comparisons, self_disagreement, split_by_subject, write_comparisons
    from llmedu.sample import load_run

    params, config, tokenizer, _ = load_run(_default_model(args.model))
    world, data = eval_questions({"world": {"seed": args.world_seed, "n_people": args.world_people},
                                  "sft_data_seed": args.world_seed})
    questions = split_by_subject(data.eval, seed=args.seed)[0]
    comparisons = make_comparisons(params, config, tokenizer, questions, world, n_samples=args.samples,
                                   noise=args.noise, seed=args.seed, progress=not args.no_progress)
    write_comparisons(args.out, comparisons)
    print(f"{len(comparisons)} comparisons from {len(questions)} questions written to {args.out}; the labeller "
          f"disagrees with itself on {self_disagreement(comparisons, args.noise):.1%} of them, so no model can "
          f"agree with it on more than {ceiling(comparisons, args.noise):.1%}.")
    return 0


def _year_questions(args) -> str:
    """Write the world's year questions of the comparison half (what GRPO trains on) to --out; their path."""
    from dataclasses import asdict
    from pathlib import Path

    from llmedu.chat_model import eval_questions
    from llmedu.grpo import YEAR_RELATIONS
    from llmedu.preference import split_by_subject
    from llmedu.sft import write_conversations

    _, data = eval_questions({"world": {"seed": args.world_seed, "n_people": args.world_people},
                              "sft_data_seed": args.world_seed})
    questions = [e for e in split_by_subject(data.eval, seed=args.seed)[0]
                 if e.kind == "fact" and e.relation in YEAR_RELATIONS]
    Path(args.out).mkdir(parents=True, exist_ok=True)
    path = Path(args.out) / "questions.jsonl"
    write_conversations(path, [asdict(e) for e in questions])
    return str(path)


def _trainer(task: str):
    def run(args) -> int:
        start = time.perf_counter()
        if not args.resume and args.data is None and task != "grpo":
            print("llmedu rlhf: give --comparisons FILE (`llmedu rlhf comparisons` writes one), or --resume.",
                  file=sys.stderr)
            return 2
        from llmedu.sft import sft_config
        from llmedu.train import NonFiniteLoss, TrainConfig, train
        from llmedu.train_state import load_state

        try:
            if args.resume:
                config = TrainConfig(**load_state(args.out).train_config)
            else:
                extra = ({"dpo_beta": args.beta} if task == "dpo" else
                         {"grpo_beta": args.beta, "grpo_group_size": args.group_size} if task == "grpo" else {})
                data = args.data or _year_questions(args)  # only GRPO has a default
                config = sft_config(_default_model(args.base), data, args.out, steps=args.steps, lr=args.lr,
                                    batch_size=args.batch_size, seed=args.seed, task=task, **extra)
            result = train(config, resume=args.resume, progress=not args.no_progress, start_time=start)
        except NonFiniteLoss as err:
            print(f"llmedu rlhf: {err}", file=sys.stderr)
            return 1
        except (ValueError, OSError) as err:  # a bad data line, base file or checkpoint: the message says which
            print(f"llmedu rlhf: {err}", file=sys.stderr)
            return 2
        if result.interrupted:
            print(f"Interrupted at step {result.step}; continue with: llmedu rlhf {args.rlhf_command} "
                  f"--out {result.out_dir} --resume")
            return 130
        print(f"Done: step {result.step}, val loss {result.evals[-1]['val_loss']:.4f} in {result.elapsed_s:.1f} s.")
        return 0
    return run


def add_parser(commands) -> None:
    """Register ``llmedu rlhf`` and its subcommands on the main parser's subcommands."""
    rlhf = commands.add_parser("rlhf", help="comparisons, a reward model and DPO (lesson 05)")
    sub = rlhf.add_subparsers(dest="rlhf_command", required=True)

    comparisons = sub.add_parser("comparisons", help="sample the chat model's replies and let the labeller choose")
    comparisons.add_argument("--model", help="the chat model (default: the shipped one)")
    comparisons.add_argument("--out", default="comparisons.jsonl", help="JSON Lines file to write")
    comparisons.add_argument("--samples", type=int, default=4, help="replies sampled per question (default 4)")
    comparisons.add_argument("--noise", type=float, default=0.4, help="the labeller's noise (default 0.4)")
    comparisons.add_argument("--seed", type=int, default=1337)
    comparisons.add_argument("--world-seed", type=int, default=1337, help="the world the model read (default 1337)")
    comparisons.add_argument("--world-people", type=int, default=300, help="its number of people (default 300)")
    comparisons.add_argument("--no-progress", action="store_true")
    comparisons.set_defaults(handler=_comparisons)

    trainers = (("reward_model", "reward-model", "train a reward model on comparisons", 120, 3e-4, 16),
                ("dpo", "dpo", "tune the chat model on comparisons with DPO", 120, 1e-5, 16),
                ("grpo", "grpo", "improve the chat model on year questions a program checks (GRPO)", 80, 1e-4, 4))
    for task, name, text, steps, lr, batch_size in trainers:
        parser = sub.add_parser(name, help=text)
        if task == "grpo":
            parser.add_argument("--questions", dest="data", help="JSON Lines file of year questions as "
                                "write_sft_files writes them (default: the world's, written to --out)")
            parser.add_argument("--group-size", type=int, default=8, help="replies sampled per question (default 8)")
            parser.add_argument("--beta", type=float, default=0.04, help="weight of the KL penalty (default 0.04)")
            parser.add_argument("--world-seed", type=int, default=1337, help="the world (default 1337)")
            parser.add_argument("--world-people", type=int, default=300, help="its number of people (default 300)")
        else:
            parser.add_argument("--comparisons", dest="data", help="JSON Lines file of prompt/chosen/rejected")
        if task == "dpo":
            parser.add_argument("--beta", type=float, default=0.1, help="DPO's beta (default 0.1)")
        parser.add_argument("--base", help="the model to start from (default: the shipped chat model)")
        parser.add_argument("--out", required=True, help="run folder")
        parser.add_argument("--steps", type=int, default=steps, help=f"optimizer steps (default {steps})")
        parser.add_argument("--lr", type=float, default=lr, help=f"peak learning rate (default {lr:g})")
        parser.add_argument("--batch-size", type=int, default=batch_size,
                            help=f"{'questions' if task == 'grpo' else 'pairs'} per step (default {batch_size})")
        parser.add_argument("--seed", type=int, default=1337)
        parser.add_argument("--resume", action="store_true", help="continue the run saved in --out")
        parser.add_argument("--no-progress", action="store_true")
        parser.set_defaults(handler=_trainer(task))

    def best_of_n(args) -> int:  # imported when run, so `llmedu --help` stays quick
        from llmedu.best_of_n import command

        return command(args)

    best = sub.add_parser("best-of-n", help="best-of-n against a reward model: proxy and gold reward as n grows")
    best.add_argument("--reward-model", required=True, help="the reward model (`llmedu rlhf reward-model` run folder)")
    best.add_argument("--model", help="the chat model to sample from (default: the shipped one)")
    best.add_argument("--questions", type=int, default=100, help="held-out questions to ask (default 100)")
    best.add_argument("--max-n", type=int, default=64, help="largest n; n = 1, 2, 4, ... up to it (default 64)")
    best.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1)")
    best.add_argument("--max-new-tokens", type=int, default=48, help="longest reply sampled (default 48)")
    best.add_argument("--seed", type=int, default=1337, help="seed of the question subset and the samples")
    best.add_argument("--split-seed", type=int, default=1337,
                      help="the --seed the comparisons were made with: questions come from the other half")
    best.add_argument("--world-seed", type=int, default=1337, help="the world the model read (default 1337)")
    best.add_argument("--world-people", type=int, default=300, help="its number of people (default 300)")
    best.add_argument("--out", default="best_of_n", help="folder for best_of_n.json and best_of_n.png")
    best.add_argument("--no-progress", action="store_true")
    best.set_defaults(handler=best_of_n)
