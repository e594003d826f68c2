"""RayPool's dispatch choice without Ray: a free actor keeps its own clients, but never waits for them."""

from f3ocus.federated.messages import EvalTask
from f3ocus.federated.pool import next_pending


def _pending(*clients):
    """Pending list as RayPool keeps it: task order reversed, so the last entry is the next task."""
    return [(index, EvalTask(client, 1), 0) for index, client in enumerate(clients)][::-1]


def _client(pending, position):
    return pending[position][1].client


def test_first_round_goes_in_task_order():
    pending = _pending("c0", "c1", "c2", "c3")
    assert _client(pending, next_pending(pending, 0, {}, window=2)) == "c0"


def test_a_free_actor_takes_its_own_client_within_the_window():
    home = {"c0": 0, "c1": 1, "c2": 0, "c3": 1}
    pending = _pending("c1", "c2", "c3")  # c0 is done on actor 0, c1 still waits for actor 1
    assert _client(pending, next_pending(pending, 0, home, window=2)) == "c2"
    assert _client(pending, next_pending(pending, 1, home, window=2)) == "c1"


def test_a_free_actor_steals_when_the_window_holds_only_other_actors_clients():
    home = {"c1": 1, "c3": 1, "c2": 0}
    pending = _pending("c1", "c3", "c2")  # actor 0's client c2 is beyond the window of 2
    assert _client(pending, next_pending(pending, 0, home, window=2)) == "c1"
    assert _client(pending, next_pending(pending, 0, home, window=3)) == "c2"


def test_a_retried_task_at_the_end_goes_first_to_its_actor():
    home = {"c0": 0, "c1": 1, "c2": 0}
    pending = _pending("c2") + [(0, EvalTask("c0", 1), 1)]  # c0 failed on actor 0 and was put back as next
    assert _client(pending, next_pending(pending, 0, home, window=2)) == "c0"
