"""Masking secret values in what leaves a worker: whole texts, and streams read in arbitrary pieces."""

from __future__ import annotations

import os
import random
import threading
import time

import pytest

from taskyard.agent.logpump import LogPump
from taskyard.agent.masking import MASK, Masker

SECRET = "hunter2-s3cr3t"


def streamed(masker: Masker, pieces: list[str]) -> str:
    stream = masker.stream()
    return "".join(stream.feed(piece) for piece in pieces) + stream.finish()


def test_no_value_worth_masking_means_no_masker():
    assert Masker.of([]) is None
    assert Masker.of(["", "a", "on", "yes"]) is None  # under 4 characters: left alone


def test_values_of_four_characters_or_more_are_masked_shorter_ones_not():
    masker = Masker.of(["abcd", "xyz", SECRET])
    assert masker is not None
    assert masker.mask(f"abcd xyz {SECRET}!") == f"{MASK} xyz {MASK}!"


@pytest.mark.parametrize("cut", range(1, len(SECRET)))
def test_a_value_split_across_two_pieces_is_masked(cut):
    masker = Masker.of([SECRET])
    assert streamed(masker, ["token=" + SECRET[:cut], SECRET[cut:] + "\n"]) == f"token={MASK}\n"


def test_a_possible_start_is_held_back_until_the_next_piece_or_the_end():
    stream = Masker([SECRET]).stream()
    assert stream.feed("line\nhun") == "line\n"
    assert stream.feed("gry\n") == "hungry\n"  # it was not the secret after all
    assert stream.feed("x hunter2") == "x "
    assert stream.finish() == "hunter2"


def test_text_that_cannot_start_a_value_goes_out_at_once():
    stream = Masker([SECRET]).stream()
    assert stream.feed("progress 10%\n") == "progress 10%\n"


def test_the_longer_of_two_values_starting_alike_is_masked_whole():
    masker = Masker(["abcd", "abcdefgh"])
    assert streamed(masker, ["x abcdef", "gh y abcd z"]) == f"x {MASK} y {MASK} z"


def test_any_cutting_masks_as_the_whole_text_does():
    values = ["s3cr3t-value", "abcd", "abcdef", "xyzw", "é-ünïcode"]
    masker = Masker(values)
    words = ["hello ", "ab", "abc", "s3cr", "3t-value", "abcdef", "xyz", "w", "\n", "ef", "é-ü", "nïcode", "q"]
    rnd = random.Random(7)
    for _ in range(2000):
        text = "".join(rnd.choice(words) for _ in range(rnd.randint(1, 12)))
        cuts = sorted(rnd.sample(range(len(text) + 1), min(len(text) + 1, rnd.randint(0, 6))))
        pieces = [text[start:end] for start, end in zip([0, *cuts], [*cuts, len(text)])]
        assert streamed(masker, pieces) == masker.mask(text), pieces


def test_the_log_pump_masks_a_value_written_in_two_pieces_to_a_pipe():
    sent: list[dict] = []

    def send(chunks: list[dict]) -> tuple[int, bool]:
        sent.extend(chunks)
        return chunks[-1]["seq"], False

    pump = LogPump(send, 0, Masker.of([SECRET]))
    read_end, write_end = os.pipe()
    pump.attach({"stdout": read_end})

    def write() -> None:
        os.write(write_end, b"before " + SECRET[:5].encode())
        time.sleep(0.3)  # the reader has surely taken the first piece alone
        os.write(write_end, SECRET[5:].encode() + b" after\n")
        os.close(write_end)

    writer = threading.Thread(target=write)
    writer.start()
    writer.join()
    pump.close()
    text = "".join(chunk["text"] for chunk in sent)
    assert text == f"before {MASK} after\n"
    assert all(SECRET[:5] not in chunk["text"] for chunk in sent)
