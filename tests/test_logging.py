import json
import math

import pytest

from seemrl.logging import JsonlLogger, MultiLogger, read_jsonl, truncate_jsonl


def test_jsonl_round_trip_and_non_finite_as_null(tmp_path):
    path = tmp_path / "m.jsonl"
    logger = JsonlLogger(path)
    logger.log([{"step": 1, "seed": 0, "train/q": 1.5},
                {"step": 1, "seed": 1, "train/q": math.nan}])
    logger.log([{"step": 2, "seed": 0, "train/q": math.inf}])
    logger.close()
    records = read_jsonl(path)
    assert records == [{"step": 1, "seed": 0, "train/q": 1.5},
                       {"step": 1, "seed": 1, "train/q": None},
                       {"step": 2, "seed": 0, "train/q": None}]
    for line in path.read_text().splitlines():
        json.loads(line)  # strict JSON: no NaN/Infinity tokens


def test_torn_last_line_is_skipped_and_truncate_is_atomic(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 2, "seed": 0}\n{"step": 4, "seed": 0}\n{"step": 6, "se')
    assert [r["step"] for r in read_jsonl(path)] == [2, 4]
    truncate_jsonl(path, after_step=2)
    assert [r["step"] for r in read_jsonl(path)] == [2]
    assert not list(tmp_path.glob("*.tmp"))


def test_multi_logger_fans_out(tmp_path):
    a, b = JsonlLogger(tmp_path / "a.jsonl"), JsonlLogger(tmp_path / "b.jsonl")
    logger = MultiLogger([a, b])
    logger.log(iter([{"step": 1, "seed": 0, "x/y": 2.0}]))  # an iterator is consumed once
    logger.close()
    assert read_jsonl(tmp_path / "a.jsonl") == read_jsonl(tmp_path / "b.jsonl") != []


def test_tensorboard_logger_writes_events(tmp_path):
    pytest.importorskip("tensorboard")
    from seemrl.logging import TensorBoardLogger

    logger = TensorBoardLogger(tmp_path / "tb")
    logger.log([{"step": 5, "seed": 0, "train/q_mean": 1.0}, {"step": 5, "seed": 3, "x/y": 2}])
    logger.close()
    assert list((tmp_path / "tb" / "seed_0").glob("events.*"))
    assert list((tmp_path / "tb" / "seed_3").glob("events.*"))


def test_a_failed_log_call_leaves_whole_lines_and_names_the_file(tmp_path):
    """Disk full half-way through a call: WriteError naming metrics.jsonl, and the file holds
    the earlier calls' lines only (no torn line for the next writer to append to)."""
    import errno

    from seemrl.types import WriteError

    path = tmp_path / "metrics.jsonl"
    logger = JsonlLogger(path)
    logger.log([{"step": 1, "seed": 0}])

    class Full:  # the disk fills after some bytes of the next write
        def __init__(self, file):
            self.file = file

        def write(self, data):
            self.file.write(data[:7])
            self.file.flush()
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.file, name)

    logger._file = Full(logger._file)
    with pytest.raises(WriteError, match=r"metrics\.jsonl: No space left on device"):
        logger.log([{"step": 2, "seed": 0}, {"step": 2, "seed": 1}])
    logger.close()
    assert path.read_text() == '{"step": 1, "seed": 0}\n'
