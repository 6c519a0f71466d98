"""One conversion of the homeserver's answers into sealroom's exceptions."""

from __future__ import annotations

import pytest

from bridge.errors import HomeserverUnavailable, MatrixRequestFailed
from bridge.matrix.failures import raise_for_status, unreachable


def test_below_400_passes() -> None:
    raise_for_status("reading", 200, {})
    raise_for_status("reading", 302, {})


def test_a_4xx_is_a_refusal_with_the_matrix_errcode() -> None:
    with pytest.raises(MatrixRequestFailed) as info:
        raise_for_status("inviting", 403, {"errcode": "M_FORBIDDEN", "error": "not allowed"})
    assert info.value.matrix_errcode == "M_FORBIDDEN"
    assert info.value.message == "inviting: M_FORBIDDEN not allowed"


def test_a_4xx_without_errcode_names_the_status() -> None:
    with pytest.raises(MatrixRequestFailed) as info:
        raise_for_status("reading", 404, {})
    assert info.value.matrix_errcode == "404"


def test_the_error_text_can_be_left_out() -> None:
    with pytest.raises(MatrixRequestFailed) as info:
        raise_for_status(
            "reading a token",
            404,
            {"errcode": "M_NOT_FOUND", "error": "No such registration token: abc"},
            quote_error=False,
        )
    assert "abc" not in info.value.message


def test_a_5xx_or_no_answer_means_try_later() -> None:
    with pytest.raises(HomeserverUnavailable):
        raise_for_status("syncing", 502, {"errcode": "M_UNKNOWN"})
    err = unreachable("syncing", ConnectionRefusedError("secret detail"))
    assert isinstance(err, HomeserverUnavailable)
    assert "secret detail" not in err.message
