"""The plain path's per-document stages as datatrove blocks: readers that read what sources.py reads,
cleaning (clean.py), the filters (filters.py), the words of the dedup shingles (dedup.py) and the split
(split.py). Each block calls those modules' own functions, so the two paths keep and drop the same
chunks (datatrove_run.py says what is and is not identical)."""

from __future__ import annotations

from pathlib import Path

from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.readers.base import BaseDiskReader
from datatrove.pipeline.readers.jsonl import JsonlReader
from datatrove.utils.word_tokenizers import WordTokenizer

from touchstone.data.clean import WORD, cleaned
from touchstone.data.config import PrepareConfig
from touchstone.data.sources import TEXT_BLOCK_CHARS, read_text_file, text_of
from touchstone.data.split import split_key, split_of
from touchstone.records import text_record


class SourceAdapter:
    """Reader adapter: the text field picked per record as sources.py picks it, and where the record came from."""

    def __init__(self, text_field: str, origins: dict[str, dict]):
        self.text_field = text_field
        self.origins = origins  # reader path -> {"source": as sources.py names it, "order": place in the input}

    def __call__(self, reader, record: dict, path: str, id_in_file) -> dict:
        text = text_of(record, self.text_field, f"{path}:{id_in_file}")
        meta = dict(self.origins.get(path, {}))
        if not text:  # datatrove's readers skip empty texts; the plain path counts them, dropped too_short
            text, meta["empty"] = " ", True
        return {"text": text, "id": f"{path}/{id_in_file}", "metadata": meta}


class TextReader(BaseDiskReader):
    """Text files as sources.read_text_file's blocks (about 1 MB, cut at blank lines), one document each."""

    name = "text"

    def read_file(self, filepath: str):
        path = Path(self.data_folder.resolve_paths(filepath))
        for i, (block, _) in enumerate(read_text_file(path, TEXT_BLOCK_CHARS)):
            if doc := self.get_document_from_dict({"text": block}, filepath, i):
                yield doc


class RankReader(JsonlReader):
    """The file this task's rank wrote in an earlier stage: a dedup index refers to documents by their
    place in that one file, so the usual sharding of a folder over tasks would not line up."""

    name = "rank file"

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        if data:
            yield from data
        name = f"{rank:05d}.jsonl"
        if self.data_folder.exists(name):
            yield from self.read_files_shard([name])


class PerDocument(PipelineStep):
    """A block made from the config that turns each document into zero or more (`documents`)."""

    def __init__(self, cfg: PrepareConfig):
        super().__init__()
        self.cfg = cfg

    def documents(self, doc: Document):
        raise NotImplementedError

    def run(self, docs, rank: int = 0, world_size: int = 1):
        for doc in docs:
            yield from self.documents(doc)


class Chunks(PerDocument):
    """clean.cleaned: Unicode repair and normalization, then cut into chunks of about `chunk_chars`."""

    type = "✂️ - CLEAN"
    name = "chunks"

    def documents(self, doc: Document):
        raw = "" if doc.metadata.pop("empty", False) else doc.text
        self.stat_update("documents")
        self.stat_update("bytes_in", value=len(raw.encode("utf-8")))
        for i, (text, _) in enumerate(cleaned([(raw, "")], self.cfg)):
            yield Document(text=text, id=f"{doc.id}/{i}", metadata=doc.metadata)


class ReasonFilter(BaseFilter):
    """One of filters.FILTERS (text -> drop reason or None) as a datatrove filter: datatrove counts each
    drop as `dropped_REASON`."""

    def __init__(self, make_check, cfg: PrepareConfig):
        self.name = make_check.__name__  # before BaseFilter names its stats
        super().__init__()
        self.check = make_check(cfg)

    def filter(self, doc: Document):
        reason = self.check(doc.text)
        return (False, reason) if reason else True


class Words(WordTokenizer):
    """dedup.shingles' words (clean.WORD's runs), for datatrove's MinHash shingles."""

    def word_tokenize(self, text: str) -> list[str]:
        return WORD.findall(text)

    def sent_tokenize(self, text: str) -> list[str]:
        return [text]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in WORD.finditer(text)]


class Split(PerDocument):
    """split.split_key / split_of: the text record's id decides the split; tagged for the writer's file name."""

    type = "🔀 - SPLIT"
    name = "split"

    def documents(self, doc: Document):
        rec = text_record(doc.text, doc.metadata["source"])
        split = split_of(split_key(rec["id"], self.cfg.seed), self.cfg)
        doc.id = rec["id"]
        doc.metadata["split"] = split
        self.stat_update(f"documents_{split}")
        self.stat_update(f"chars_{split}", value=len(doc.text))
        yield doc


def text_record_of(writer, doc: Document) -> dict:
    """JsonlWriter adapter: the plain path's text record, keys in its (sorted) order."""
    return {"id": doc.id, "source": doc.metadata["source"], "text": doc.text}


def exact_content(doc: Document) -> bytes:
    return doc.text.encode("utf-8")


def first_file_first(doc: Document) -> int:
    """ExactDedupConfig priority (1-65535, highest kept): earlier files win, as in dedup.exact_dedup."""
    return max(1, 65535 - doc.metadata["order"])
