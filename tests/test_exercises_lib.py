"""The self-check helpers (smoothdistill_lib.exercises): stubs are 'not answered', wrong answers get a
hint that hides the expected value, a wrong type says what was expected, right answers pass, and in
Jupyter each outcome is ONE line (no traceback into the library)."""

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

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
    with pytest.raises(ex.WrongAnswer, match="^wrong: hint$"):
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


def test_a_wrong_type_says_what_was_expected():
    """A float for a count (exercise 1.1 raised a raw TypeError from range() before), a string for a
    number, a bare string for a set, a function that is not one: each a WrongAnswer naming the type."""
    with pytest.raises(ex.WrongAnswer, match=r"should be a number of EMA updates \(an int\), got float 68.97"):
        ex.verify("1.1", steps_to_half=68.97)
    with pytest.raises(ex.WrongAnswer, match="should be a number of EMA updates .an int., got str '69'"):
        ex.verify("1.1", steps_to_half="69")
    assert ex.whole("n", 69.0) == 69 and ex.whole("n", np.int64(7)) == 7  # whole floats pass
    with pytest.raises(ex.WrongAnswer, match="should be a number, got list"):
        ex.number("x", [1.0])
    with pytest.raises(ex.WrongAnswer, match="should be a set of names, e.g."):
        ex.verify("3.2", drops_to_zero="shared_samples", recordings={})
    with pytest.raises(ex.WrongAnswer, match="should be a function"):
        ex.verify("8.3", smallest_p=0.25)
    with pytest.raises(ex.WrongAnswer, match=r"calling `smallest_p\(3\)` raised ZeroDivisionError"):
        ex.verify("8.3", smallest_p=lambda n: 1 / 0)


def test_one_line_names_the_exercise_and_collapses_whitespace():
    with pytest.raises(ex.WrongAnswer) as info:
        ex.verify("1.1", steps_to_half=70)
    line = ex.one_line(info.value)
    assert line.startswith("Exercise 1.1: wrong: fewer updates already close half of the gap") and "\n" not in line
    assert info.value._render_traceback_() == [line]
    with pytest.raises(ex.NotAnswered) as info:
        ex.verify("1.1", steps_to_half=...)
    assert ex.one_line(info.value).startswith("Exercise 1.1: `steps_to_half` is not answered yet")
    missing = ex.MissingInput("This exercise reads the records,\n which are not here")
    assert missing._render_traceback_() == ["cannot check yet: This exercise reads the records, which are not here"]


def test_a_check_shows_one_line_in_jupyter():
    """In a real kernel, "not answered yet", "wrong: ..." and "correct" are each ONE line: IPython renders
    the exceptions through _render_traceback_, so no traceback frame of the library is shown."""
    cells = ["from smoothdistill_lib import exercises\nsteps_to_half = ...",
             'exercises.verify("1.1", steps_to_half=steps_to_half)',
             'exercises.verify("1.1", steps_to_half=68.97)',
             'exercises.verify("1.1", steps_to_half=70)',
             'exercises.verify("1.1", steps_to_half=69)']
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True).execute()
    outs = [c.outputs for c in nb.cells[1:]]
    for out, ename, start in [(outs[0], "NotAnswered", "Exercise 1.1: `steps_to_half` is not answered yet: replace"),
                              (outs[1], "WrongAnswer", "Exercise 1.1: wrong: `steps_to_half` should be a number of "
                                                       "EMA updates (an int), got float 68.97"),
                              (outs[2], "WrongAnswer", "Exercise 1.1: wrong: fewer updates already close half")]:
        (error,) = out
        assert error["output_type"] == "error" and error["ename"] == ename
        assert len(error["traceback"]) == 1 and error["traceback"][0].startswith(start), error["traceback"]
        assert "exercises.py" not in error["traceback"][0] and "Traceback" not in error["traceback"][0]
    assert [o.get("text") for o in outs[3]] == ["Exercise 1.1: correct.\n"]


def test_the_registry_covers_points_and_hidden_checks():
    assert all(e.points >= 2 and e.hidden_points == e.points - 1 for e in ex.EXERCISES.values())
    assert {n for n, e in ex.EXERCISES.items() if e.hidden is not None} == {"6.1", "7.2", "8.3", "9.2"}
    assert ex.EXERCISES["1.1"].names == ("steps_to_half",)
    with pytest.raises(ValueError, match="no exercise '99.1'"):
        ex.verify("99.1")
