"""How pair and claim questions are written for the model: one format, shared by the tokenizer
(which reserves these special tokens), the judge, fine-tuning and evaluation.

    pair:  <|prompt|>{prompt}<|a|>{a}<|b|>{b}<|answer|>   -> <|A|> or <|B|>
    claim: <|statement|>{statement}<|answer|>             -> <|true|> or <|false|>

The answers are single special tokens, so the judge reads one next-token distribution; a model from
elsewhere gets them added (and its embeddings resized) by the judge.

A judge trained to work first (`FinetuneConfig.working_first`) is asked the same question with its
working in front of the answer, which it writes itself (greedy, never sampled) before it answers:

    ...<|b|>{b}<|work|>{working}<|answer|>                -> <|A|> or <|B|>
"""

EOS = "<|endoftext|>"
PAD = "<|pad|>"
PROMPT, A, B, STATEMENT, ANSWER = "<|prompt|>", "<|a|>", "<|b|>", "<|statement|>", "<|answer|>"
ANSWER_A, ANSWER_B, ANSWER_TRUE, ANSWER_FALSE = "<|A|>", "<|B|>", "<|true|>", "<|false|>"
WORK = "<|work|>"
SPECIAL_TOKENS = [EOS, PAD, PROMPT, A, B, STATEMENT, ANSWER, ANSWER_A, ANSWER_B, ANSWER_TRUE, ANSWER_FALSE, WORK]


def pair_prompt(prompt: str, a: str, b: str) -> str:
    return f"{PROMPT}{prompt}{A}{a}{B}{b}{ANSWER}"


def claim_prompt(statement: str) -> str:
    return f"{STATEMENT}{statement}{ANSWER}"
