import io

from protrep.progress import progress


def test_progress_redraws_rarely_outside_a_terminal(monkeypatch):
    fake = io.StringIO()
    monkeypatch.setattr("sys.stderr", fake)
    bar = progress(range(1000), desc="work")
    assert bar.mininterval == 30.0
    assert sum(1 for _ in bar) == 1000
    text = fake.getvalue()
    assert "work" in text and "1000/1000" in text
    assert text.count("\r") <= 3  # start and end, no redraw per step


def test_progress_can_be_disabled(monkeypatch):
    fake = io.StringIO()
    monkeypatch.setattr("sys.stderr", fake)
    assert list(progress([1, 2], disable=True)) == [1, 2]
    assert fake.getvalue() == ""
