"""saltext_edge.memo: the one caching idiom (one value per key, per thread if asked, closed when replaced)."""

import threading

from saltext_edge.memo import Memo


def test_one_value_while_the_key_is_the_same():
    memo, built = Memo(), []
    opts = {"id": "m"}

    def build():
        built.append(1)
        return len(built)

    assert memo.get((opts, 1), build) == 1
    assert memo.get((opts, 1), build) == 1
    assert memo.get((opts, 2), build) == 2  # another key: built again
    assert memo.get((opts, 1), build) == 3  # one value only


def test_per_thread_values_closed_when_replaced_and_on_clear():
    closed = []
    memo = Memo(per_thread=True, close=closed.append)
    main = memo.get(("a",), object)
    assert memo.get(("a",), object) is main
    other = []
    thread = threading.Thread(target=lambda: other.append(memo.get(("a",), object)))
    thread.start()
    thread.join()
    assert other[0] is not main  # each thread builds its own
    replacement = memo.get(("b",), object)
    assert closed == [main]
    memo.clear()  # what runs at exit: every value still held
    assert sorted(map(id, closed)) == sorted(map(id, [main, other[0], replacement]))
    assert memo.get(("b",), object) is not replacement  # a cleared value is never given back
