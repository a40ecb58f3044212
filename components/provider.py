"""Provider plumbing shared by the dynamic providers: preview's unknowns, the configured
provider base class, the owned-resource base class and the pure diff.

Dynamic providers are pickled into Pulumi state by module path and class name, so the concrete
providers stay in ``components.segment_source``, ``components.segment_destination`` and
``components.userflow_webhook``; this module holds only what they inherit.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, ClassVar, Generic, TypeVar

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    ConfigureRequest,
    DiffResult,
    ReadResult,
    Resource,
    ResourceProvider,
)
from pulumi.output import Unknown
from pulumi.runtime.rpc import UNKNOWN as UNKNOWN_SENTINEL

from components.adoption import (
    AdoptionError,
    carry,
    late_adoption,
    on_destroy_from_config,
    releases_on_destroy,
)
from components.api_http import ApiClient, ApiSettings, NotFoundError, RetryPolicy

ClientT = TypeVar("ClientT", bound=ApiClient)


def unknown() -> Any:
    """A placeholder for a value only known after apply (what preview passes in its place)."""
    return Unknown()  # type: ignore[no-untyped-call]


def is_unknown(value: Any) -> bool:
    """True for a value Pulumi doesn't know yet (preview): validate and compare it later."""
    if isinstance(value, Unknown) or value == UNKNOWN_SENTINEL:
        return True
    if isinstance(value, dict):
        return any(is_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(is_unknown(v) for v in value)
    return False


class ConfiguredProvider(ResourceProvider, Generic[ClientT]):
    """A dynamic provider whose credentials come from stack config through ``configure()``.

    Pulumi 3.260 (``pulumi/dynamic/__main__.py``) unpickles the provider, then calls
    ``configure(ConfigureRequest(Config(<whole stack config>)))`` once per process; the engine
    passes dynamic providers every stack config key with its namespace and secrets decrypted.
    So the token lives only in the provider process's memory: ``__getstate__`` keeps just the
    retry policy, and the pickled provider in the state holds no token, session or socket.

    Subclasses name the API they call (``client_type``), and give the pure pieces of the
    lifecycle: ``with_defaults`` and ``validate`` for check(); ``identity``, ``mutable``,
    ``regenerated``, ``desired_view`` and ``delete_before_replace`` for diff(); ``read_state``
    for read() (where a 404 means gone). Create, update and delete stay theirs: each API
    adopts what an interrupted ``up`` left behind in its own way.
    """

    client_type: type[ClientT]
    identity: ClassVar[tuple[str, ...]] = ()  # inputs whose change means a new object
    mutable: ClassVar[tuple[str, ...]] = ()  # inputs an update changes in place
    regenerated: ClassVar[tuple[str, ...]] = ()  # outputs update restores when a read lost them

    def __init__(self, policy: RetryPolicy | None = None) -> None:
        super().__init__()
        self._policy = policy
        self._settings: ApiSettings | None = None
        self._client: ClientT | None = None
        self._lock = threading.Lock()
        self._on_destroy: str | None = None  # adoptedOnDestroy, read by delete()

    def __getstate__(self) -> dict[str, Any]:
        return {"policy": self._policy}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state.get("policy"))  # type: ignore[misc]

    def configure(self, req: ConfigureRequest) -> None:
        with self._lock:
            self._settings = self.client_type.settings_type.from_config(req.config)
            self._client = None
            self._on_destroy = on_destroy_from_config(req.config)

    def config_problems(self) -> list[str]:
        """What is wrong with the stack config, for check() to report before any call."""
        if self._settings is None:
            return [
                "the provider was not configured with the stack config "
                "(needs Pulumi >= 3.136, where dynamic providers receive configure())"
            ]
        return self._settings.problems()

    def client(self) -> ClientT:
        """The API client, built on first use (never at import or pickling time)."""
        with self._lock:
            if self._client is None:
                problems = self.config_problems()
                if problems:
                    raise ValueError("; ".join(problems))
                assert self._settings is not None
                self._client = self.client_type(self._settings, policy=self._policy)
            return self._client

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        """The inputs with their defaults; their problems, then the stack config's problems."""
        inputs = self.with_defaults(news)
        failures = [CheckFailure(prop, reason) for prop, reason in self.validate(inputs)]
        failures.extend(CheckFailure("config", problem) for problem in self.config_problems())
        return CheckResult(inputs, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """Pure and call-free: the wanted view of the inputs against the old outputs."""
        late = late_adoption(olds, news)
        if late:
            raise AdoptionError(late)
        wanted = self.desired_view(self.with_defaults(news))
        replaces, updates = diff_managed(olds, wanted, self.identity, self.mutable)
        updates.extend(key for key in self.regenerated if not olds.get(key))
        return DiffResult(
            changes=bool(replaces or updates),
            replaces=replaces,
            delete_before_replace=self.delete_before_replace(replaces),
        )

    def desired_view(self, inputs: Mapping[str, Any]) -> Mapping[str, Any]:
        """What the inputs ask for, in the shape of the outputs (the inputs themselves here)."""
        return inputs

    def delete_before_replace(self, replaces: list[str]) -> bool | None:
        """Whether the old object must go before its replacement is made; None: the engine's."""
        return None

    def with_defaults(self, news: Mapping[str, Any]) -> dict[str, Any]:
        """The inputs with every optional one filled in (pure, so diff can use it too)."""
        return dict(news)

    def validate(self, inputs: Mapping[str, Any]) -> list[tuple[str, str]]:
        """(input, what is wrong with it) for each bad input; unknown values are skipped."""
        raise NotImplementedError

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        """The object as the API has it now; a 404 means it is gone (Pulumi drops it)."""
        try:
            return ReadResult(id_, carry(props, self.read_state(id_, props)))
        except NotFoundError:
            return ReadResult("", {})

    def read_state(self, id_: str, props: dict[str, Any]) -> dict[str, Any]:
        """The outputs for ``id_``, read from the API; raises NotFoundError when it is gone."""
        raise NotImplementedError

    def releases(self, props: Mapping[str, Any]) -> bool:
        """Whether delete must keep this object: adopted, and adoptedOnDestroy isn't delete."""
        return releases_on_destroy(props, self._on_destroy)


class OwnedResource(Resource):
    """A dynamic resource the stack owns: its outputs start unset, and some of them are secret.

    Subclasses give the ``module=``/``name=`` of their type token as before; this class only
    builds the props and the options, so each resource's ``__init__`` is one call.
    """

    def __init__(
        self,
        provider: ResourceProvider,
        resource_name: str,
        inputs: Mapping[str, Any],
        outputs: tuple[str, ...],
        secret_outputs: list[str],
        opts: pulumi.ResourceOptions | None,
    ) -> None:
        props: dict[str, Any] = {**inputs, **dict.fromkeys(outputs)}
        secret_opts = pulumi.ResourceOptions(additional_secret_outputs=secret_outputs)
        super().__init__(
            provider, resource_name, props, pulumi.ResourceOptions.merge(opts, secret_opts)
        )


def diff_managed(
    olds: Mapping[str, Any],
    news: Mapping[str, Any],
    identity: tuple[str, ...],
    mutable: tuple[str, ...],
) -> tuple[list[str], list[str]]:
    """Compare new inputs with the old outputs: (fields forcing replacement, fields to update).

    Pure and call-free, so ``pulumi preview`` and a second ``up`` cost no API call. A value not
    known yet (preview) counts as a change, because it may well be one.
    """
    replaces = [k for k in identity if is_unknown(news.get(k)) or news.get(k) != olds.get(k)]
    updates = [k for k in mutable if is_unknown(news.get(k)) or news.get(k) != olds.get(k)]
    return replaces, updates
