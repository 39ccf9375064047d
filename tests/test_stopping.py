"""Stop strings: never returned, never cut short, held back only while they may still match."""
import pytest

from pyllama.stopping import StopStrings


def _run(stop, pieces):
    s = StopStrings(stop)
    out, stopped = [], False
    for p in pieces:
        text, stopped = s.push(p)
        out.append(text)
        if stopped:
            break
    if not stopped:
        out.append(s.flush())
    return "".join(out), stopped


def test_stop_string_split_across_pieces_is_not_returned():
    assert _run(["END"], ["Hello E", "N", "D and more"]) == ("Hello ", True)


def test_partial_match_that_fails_is_released():
    s = StopStrings(["END"])
    assert s.push("Hello EN") == ("Hello ", False)
    assert s.push("Xtra") == ("ENXtra", False)


def test_first_of_several_stops_wins():
    assert _run(["b", "a"], ["xxab"]) == ("xx", True)


def test_without_stops_text_passes_through():
    s = StopStrings(())
    assert s.push("abc") == ("abc", False)


def test_unfinished_partial_is_flushed_at_the_end():
    assert _run("STOP", ["abc ST"]) == ("abc ST", False)


@pytest.mark.parametrize("bad", [[""], [3], ["ok", None]])
def test_bad_stop_values_raise(bad):
    with pytest.raises(ValueError, match="stop"):
        StopStrings(bad)
