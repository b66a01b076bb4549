"""Answer approval tasks through Airflow's real REST API, from a thread, while ``dag.test()`` runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

WAIT_BEFORE_ANSWER_S = 1.2  # Airflow 3.3.2 fails a task answered < ~1 s after it starts waiting


@dataclass(frozen=True)
class Answer:
    task_id: str
    user: str
    option: str  # "Approve" | "Reject"


@dataclass
class Responder:
    """Waits for each task to be awaiting input, then PATCHes its hitlDetails as the given user."""

    dag_id: str
    answers: list[Answer]
    timeout_s: float = 60
    before_answer: dict[int, Callable[[], None]] = field(default_factory=dict)  # by answer index
    statuses: list[tuple[Answer, int, dict]] = field(default_factory=list)
    error: BaseException | None = None
    _thread: threading.Thread | None = None

    def start(self) -> Responder:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def join(self) -> None:
        assert self._thread is not None
        self._thread.join(timeout=self.timeout_s)
        if self.error:
            raise self.error

    def _run(self) -> None:
        try:
            from airflow.api_fastapi.app import create_app
            from fastapi.testclient import TestClient

            client = TestClient(create_app())
            for index, answer in enumerate(self.answers):
                run_id = self._wait_awaiting(answer.task_id)
                if index in self.before_answer:
                    self.before_answer[index]()
                time.sleep(WAIT_BEFORE_ANSWER_S)
                token = client.post(
                    "/auth/token", json={"username": answer.user, "password": f"{answer.user}-pw"}
                ).json()["access_token"]
                response = client.patch(
                    f"/api/v2/dags/{self.dag_id}/dagRuns/{run_id}/taskInstances/{answer.task_id}/-1/hitlDetails",
                    json={"chosen_options": [answer.option], "params_input": {}},
                    headers={"Authorization": f"Bearer {token}"},
                )
                self.statuses.append((answer, response.status_code, response.json()))
        except BaseException as exc:  # surfaced by join()
            self.error = exc

    def _wait_awaiting(self, task_id: str) -> str:
        from airflow.models import TaskInstance
        from airflow.utils.session import create_session

        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            with create_session() as session:
                ti = (
                    session.query(TaskInstance)
                    .filter(TaskInstance.dag_id == self.dag_id, TaskInstance.task_id == task_id)
                    .order_by(TaskInstance.start_date.desc().nullslast())
                    .first()
                )
                if ti is not None and ti.state == "awaiting_input":
                    return ti.run_id
            time.sleep(0.2)
        raise TimeoutError(f"{self.dag_id}.{task_id} never started waiting for input")
