"""How pair and claim questions are written for the model: one format, shared by the tokenizer
(which reserves these special tokens), the judge, fine-tuning and evaluation.

    pair:  <|prompt|>{prompt}<|a|>{a}<|b|>{b}<|answer|>   -> <|A|> or <|B|>
    claim: <|statement|>{statement}<|answer|>             -> <|true|> or <|false|>

The answers are single special tokens, so the judge reads one next-token distribution and never
samples; a model from elsewhere gets them added (and its embeddings resized) by the judge.
"""

EOS = "<|endoftext|>"
PAD = "<|pad|>"
PROMPT, A, B, STATEMENT, ANSWER = "<|prompt|>", "<|a|>", "<|b|>", "<|statement|>", "<|answer|>"
ANSWER_A, ANSWER_B, ANSWER_TRUE, ANSWER_FALSE = "<|A|>", "<|B|>", "<|true|>", "<|false|>"
SPECIAL_TOKENS = [EOS, PAD, PROMPT, A, B, STATEMENT, ANSWER, ANSWER_A, ANSWER_B, ANSWER_TRUE, ANSWER_FALSE]


def pair_prompt(prompt: str, a: str, b: str) -> str:
    return f"{PROMPT}{prompt}{A}{a}{B}{b}{ANSWER}"


def claim_prompt(statement: str) -> str:
    return f"{STATEMENT}{statement}{ANSWER}"
