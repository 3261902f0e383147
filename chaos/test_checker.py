"""Unit tests of the history checker on hand-made good and bad histories.

Run: python3 -m unittest discover -s chaos -p 'test_*.py'
"""

import json
import unittest

from checker import check, exact_json


def body(op, session="s", **extra):
    event = {"type": "t", "payload": {"op": op, "x": 1.50}, "actor": "a"}
    event.update(extra)
    return json.dumps(event)


def stored(op, seq, **extra):
    """The event as a node returns it: the sent content plus seq and the defaults."""
    event = json.loads(body(op, **extra))
    text = json.dumps({"seq": seq, **event, "source": event.get("source"), "metadata": event.get("metadata", {}), "refs": event.get("refs", {}), "inserted_at": "2026-12-03T00:00:00.000000Z"})
    return exact_json(text.replace('"x": 1.5', '"x": 1.50'))


def append(op, outcome, seq=None, invoke=0.0, complete=1.0, expected=None, session="s", error=None, deduped=False):
    return {"kind": "append", "op": op, "session": session, "body": body(op).replace("1.5", "1.50"), "invoke": invoke, "complete": complete,
            "outcome": outcome, "seq": seq, "expected_seq": expected, "error": error, "deduped": deduped, "node": "n1"}


def read(last_seq, events, invoke, complete, session="s"):
    return {"kind": "read", "session": session, "invoke": invoke, "complete": complete, "outcome": "ok", "last_seq": last_seq, "events": events, "node": "n1"}


def everywhere(events, nodes=("n1", "n2", "n3"), session="s"):
    return {n: {session: list(events)} for n in nodes}


class GoodHistories(unittest.TestCase):
    def test_sequential_acks(self):
        h = [append(1, "ok", 1, 0, 1), append(2, "ok", 2, 2, 3), read(2, [stored(1, 1), stored(2, 2)], 4, 5)]
        v = check(h, everywhere([stored(1, 1), stored(2, 2)]))
        self.assertTrue(v.valid, v.violations)
        self.assertEqual(v.stats["acknowledged"], 2)

    def test_indeterminate_may_be_present_or_absent(self):
        h = [append(1, "info", None, 0, 1), append(2, "info", None, 0, 1), append(3, "ok", 2, 2, 3)]
        v = check(h, everywhere([stored(1, 1), stored(3, 2)]))
        self.assertTrue(v.valid, v.violations)

    def test_retry_with_same_key_deduped(self):
        h = [append(1, "info", None, 0, 5), append(1, "ok", 1, 6, 7, deduped=True)]
        self.assertTrue(check(h, everywhere([stored(1, 1)])).valid)

    def test_concurrent_appends_in_either_order(self):
        h = [append(1, "ok", 2, 0, 3), append(2, "ok", 1, 1, 2)]
        self.assertTrue(check(h, everywhere([stored(2, 1), stored(1, 2)])).valid)

    def test_expected_seq(self):
        h = [append(1, "ok", 1, 0, 1, expected=0), append(2, "fail", None, 2, 3, expected=0, error="expected_seq_conflict")]
        self.assertTrue(check(h, everywhere([stored(1, 1)])).valid)


class BadHistories(unittest.TestCase):
    def rules(self, history, final):
        return sorted({v.rule for v in check(history, final).violations})

    def test_lost_ack(self):
        self.assertEqual(self.rules([append(1, "ok", 1), append(2, "ok", 2, 2, 3)], everywhere([stored(1, 1)])), ["R3"])

    def test_violations_are_counted_by_rule_and_session_beyond_the_listed_ones(self):
        h = [append(op, "ok", op, op, op + 0.5) for op in range(1, 6)]
        h += [append(9, "ok", 1, 0, 1, session="t")]
        final = {n: {"s": [stored(1, 1)], "t": None} for n in ("n1", "n2")}
        v = check(h, final, max_reports=2)
        self.assertEqual(len(v.violations), 3, "two listed, then one line for the rest")
        self.assertEqual(v.stats["violations_by_rule_and_session"], {"R1 t": 2, "R3 s": 4, "R3 t": 1})

    def test_ack_at_another_seq(self):
        h = [append(1, "info"), append(2, "ok", 1, 2, 3)]
        self.assertIn("R3", self.rules(h, everywhere([stored(1, 1), stored(2, 2)])))

    def test_altered_number(self):
        altered = exact_json(json.dumps({**stored_plain(1, 1), "payload": {"op": 1, "x": 1.5}}))
        self.assertEqual(self.rules([append(1, "ok", 1)], everywhere([altered])), ["R3"])

    def test_nodes_disagree(self):
        final = everywhere([stored(1, 1), stored(2, 2)])
        final["n3"]["s"] = [stored(1, 1)]
        self.assertEqual(self.rules([append(1, "ok", 1), append(2, "ok", 2, 2, 3)], final), ["R1"])

    def test_node_unreadable(self):
        final = everywhere([stored(1, 1)])
        final["n2"]["s"] = None
        self.assertEqual(self.rules([append(1, "ok", 1)], final), ["R1"])

    def test_gap(self):
        self.assertIn("R2", self.rules([append(1, "ok", 1), append(2, "ok", 3, 2, 3)], everywhere([stored(1, 1), stored(2, 3)])))

    def test_duplicate(self):
        h = [append(1, "info", None, 0, 1), append(1, "ok", 2, 2, 3)]
        self.assertIn("R9", self.rules(h, everywhere([stored(1, 1), stored(1, 2)])))

    def test_never_sent(self):
        self.assertEqual(self.rules([append(1, "ok", 1)], everywhere([stored(1, 1), stored(99, 2)])), ["R4"])

    def test_definite_failure_present(self):
        h = [append(1, "ok", 1), append(2, "fail", None, 2, 3, error="expected_seq_conflict")]
        self.assertEqual(self.rules(h, everywhere([stored(1, 1), stored(2, 2)])), ["R5"])

    def test_expected_seq_broken(self):
        h = [append(1, "ok", 1), append(2, "ok", 2, 2, 3, expected=0)]
        self.assertEqual(self.rules(h, everywhere([stored(1, 1), stored(2, 2)])), ["R6"])

    def test_real_time_order(self):
        # 1 was acknowledged before 2 was invoked, yet 2 sits before it (and 1's ack says 2).
        h = [append(1, "ok", 2, 0, 1), append(2, "info", None, 2, 3)]
        self.assertIn("R7", self.rules(h, everywhere([stored(2, 1), stored(1, 2)])))

    def test_stale_read(self):
        h = [append(1, "ok", 1, 0, 1), read(0, [], 2, 3)]
        self.assertEqual(self.rules(h, everywhere([stored(1, 1)])), ["R8"])

    def test_read_floor_is_the_largest_seq_acknowledged_strictly_before(self):
        # seq 2 is acknowledged (t=1) before seq 1 (t=2): the floor after t=1 is 2, not 1;
        # an acknowledgement at the read's own invoke instant does not count.
        h = [append(1, "ok", 1, 0, 2), append(2, "ok", 2, 0, 1)]
        final = everywhere([stored(1, 1), stored(2, 2)])
        self.assertEqual(self.rules(h + [read(0, [], 1, 4)], final), [])
        self.assertEqual(self.rules(h + [read(2, [], 1.5, 4)], final), [])
        self.assertEqual(self.rules(h + [read(1, [], 2.5, 4)], final), ["R8"])

    def test_read_saw_a_phantom(self):
        h = [append(1, "ok", 1, 0, 1), read(1, [stored(2, 1)], 2, 3)]
        self.assertIn("R8", self.rules(h, everywhere([stored(1, 1)])))

    def test_acks_disagree(self):
        h = [append(1, "ok", 1, 0, 1), append(1, "ok", 2, 2, 3, deduped=True)]
        self.assertIn("R10", self.rules(h, everywhere([stored(1, 1)])))


def stored_plain(op, seq):
    return json.loads(json.dumps({"seq": seq, "type": "t", "payload": {"op": op, "x": 1.5}, "actor": "a", "source": None, "metadata": {}, "refs": {}}))


if __name__ == "__main__":
    unittest.main()
