"""The public API is what actorcluster/__init__.py exports, pinned so a change is deliberate."""

import actorcluster


def test_public_names_are_pinned():
    assert sorted(actorcluster.__all__) == sorted([
        "Actor", "ActorClusterError", "ActorCrashed", "ActorError", "ActorNotFound", "ActorRef",
        "AskTimeout", "Client", "ClusterError", "ClusterExists", "ClusterNotFound", "ConfigError",
        "MailboxFull", "RemoteError", "Request", "Response", "TargetImportError", "__version__",
        "ask", "ask_all", "ask_sync", "broadcast", "connect", "lookup", "tell",
        # supervision trees
        "ActorSpec", "Pool", "Supervisor", "count_children", "delete_child", "restart_child",
        "start_child", "terminate_child", "which_children",
    ])
    for name in actorcluster.__all__:
        assert hasattr(actorcluster, name), name


def test_every_actor_error_is_an_actorcluster_error():
    for name in ("ActorNotFound", "AskTimeout", "ActorCrashed", "RemoteError", "MailboxFull"):
        error = getattr(actorcluster, name)
        assert issubclass(error, actorcluster.ActorError)
        assert issubclass(error, actorcluster.ActorClusterError)


def test_using_the_api_outside_a_cluster_says_why():
    import pytest

    with pytest.raises(actorcluster.ActorError, match="no cluster here"):
        actorcluster.tell("counter", 1)


def test_a_reference_is_to_a_name():
    """lookup(5) made ActorRef(5), and its first tell said "a target is ... not a ActorRef"."""
    import pytest

    assert actorcluster.lookup("web/2#1").base_name == "web/2"
    for wrong in (5, None, b"counter"):
        with pytest.raises(TypeError, match="an actor's name is a str"):
            actorcluster.lookup(wrong)
