"""deploy/local/writeback.py on a stand-in for /proc/sys/vm: set only over the default, put back."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.local import writeback


def _vm(tmp_path: Path, *, background_bytes: int = 0, ratio: int = 10) -> Path:
    vm = tmp_path / "vm"
    vm.mkdir()
    (vm / "dirty_background_bytes").write_text(f"{background_bytes}\n")
    (vm / "dirty_background_ratio").write_text(f"{ratio}\n")
    (vm / "dirty_expire_centisecs").write_text("3000\n")
    return vm


def test_the_default_is_replaced_and_put_back_when_the_server_stops(tmp_path: Path) -> None:
    vm, saved = _vm(tmp_path, ratio=7), tmp_path / "saved.json"
    assert "was 7 % of memory" in writeback.apply(saved, vm)
    assert int((vm / "dirty_background_bytes").read_text()) == writeback.BACKGROUND_BYTES
    assert "from 4 MB of dirty pages" in writeback.describe(vm)
    writeback.restore(saved, vm)
    assert (vm / "dirty_background_ratio").read_text() == "7" and not saved.exists()


def test_a_host_setting_of_its_own_is_kept(tmp_path: Path) -> None:
    vm, saved = _vm(tmp_path, background_bytes=64 << 20), tmp_path / "saved.json"
    assert "the host's own setting, kept" in writeback.apply(saved, vm)
    assert int((vm / "dirty_background_bytes").read_text()) == 64 << 20 and not saved.exists()
    writeback.restore(saved, vm)
    assert int((vm / "dirty_background_bytes").read_text()) == 64 << 20


def test_a_setting_changed_since_is_not_undone(tmp_path: Path) -> None:
    vm, saved = _vm(tmp_path), tmp_path / "saved.json"
    writeback.apply(saved, vm)
    (vm / "dirty_background_bytes").write_text(str(32 << 20))  # an operator's change meanwhile
    writeback.restore(saved, vm)
    assert int((vm / "dirty_background_bytes").read_text()) == 32 << 20
    assert (vm / "dirty_background_ratio").read_text().strip() == "10" and not saved.exists()


def test_without_permission_it_says_how_to_set_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vm, saved = _vm(tmp_path), tmp_path / "saved.json"

    def refused(self: Path, data: str) -> int:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "write_text", refused)  # /proc/sys as a user other than root
    message = writeback.apply(saved, vm)
    assert "as root: sysctl vm.dirty_background_bytes=4194304" in message and not saved.exists()
    assert (
        writeback.describe(vm)
        == "kernel writeback: from 10 % of memory dirty or pages 30 s old (the default)"
    )
