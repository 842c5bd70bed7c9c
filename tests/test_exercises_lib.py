"""The self-check helpers (smoothdistill_lib.exercises): stubs are 'not answered', wrong answers get a
hint that hides the expected value, right answers pass."""

import pytest

from smoothdistill_lib import exercises as ex


def test_a_stub_is_not_answered_and_says_what_to_do():
    for stub in (..., None, {"a": 1, "b": ...}, (1, ...)):
        with pytest.raises(ex.NotAnswered, match="`x` is not answered yet: replace the `...`"):
            ex.answered("x", stub)
    assert ex.answered("x", 0) == 0 and ex.answered("x", {"a": 1}) == {"a": 1}


def test_a_stub_function_is_not_answered():
    def stub(n):
        raise NotImplementedError

    with pytest.raises(ex.NotAnswered, match="still raises NotImplementedError"):
        ex.call("f", stub, 3)
    assert ex.call("f", lambda n: n + 1, 3) == 4


def test_close_says_which_side_and_hides_the_expected_value():
    with pytest.raises(ex.WrongAnswer, match="too large") as info:
        ex.check_close("steps", 70, 69.0, abs_tol=0.5, hint="Use ln.")
    assert "69" not in str(info.value) and "Use ln." in str(info.value)
    with pytest.raises(ex.WrongAnswer, match="too small"):
        ex.check_close("steps", 0.5, 0.96, rel=0.01)
    with pytest.raises(ex.WrongAnswer, match="should be a number"):
        ex.check_close("steps", "many", 1.0)
    ex.check_close("steps", 69.2, 69.0, abs_tol=0.5)  # within tolerance: no error


def test_equal_and_check():
    with pytest.raises(ex.WrongAnswer, match="`pair` = 'a' is not right. Look again"):
        ex.check_equal("pair", "a", "b", "Look again.")
    ex.check_equal("pair", "b", "b")
    with pytest.raises(ex.WrongAnswer, match="^Not yet: hint$"):
        ex.check(False, "hint")
    # every failure is an AssertionError, so a failing check reads like an assertion
    assert issubclass(ex.NotAnswered, AssertionError) and issubclass(ex.WrongAnswer, AssertionError)


def test_passed_prints_one_line(capsys):
    ex.passed("01.1")
    assert capsys.readouterr().out == "Exercise 01.1: correct.\n"


def test_a_missing_input_says_what_and_how_and_is_not_a_wrong_answer():
    with pytest.raises(ex.MissingInput, match=r"reads the lambda records \(results/lambda\), which are not on this "
                                              r"machine: run configs/lambda.yaml") as info:
        ex.needs(None, "the lambda records (results/lambda)", "run configs/lambda.yaml")
    assert not isinstance(info.value, ex.ExerciseError)
    records = {"run": 1}
    assert ex.needs(records, "records", "run") is records
