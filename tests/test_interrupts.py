"""harmonize_cli.interrupts: a signal is raised once, never lost, and maps to 130 / 143."""

from __future__ import annotations

import os
import signal
import sys
import threading

import pytest

from harmonize_cli import interrupts

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def _spin():
    total = 0
    for i in range(200_000):  # backward jumps: Python runs pending signal handlers here
        total += i
    return total


def test_a_signal_raises_keyboard_interrupt_once_and_is_reported():
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with interrupts.handled() as caught:
            os.kill(os.getpid(), signal.SIGTERM)
            _spin()
            pytest.fail("the signal did not interrupt")
    assert caught.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is previous  # restored
    interrupts.check()  # outside handled(): nothing pending any more


def test_a_second_signal_does_not_interrupt_the_cleanup():
    cleaned = False
    with pytest.raises(KeyboardInterrupt):
        with interrupts.handled() as caught:
            try:
                os.kill(os.getpid(), signal.SIGINT)
                _spin()
            finally:
                os.kill(os.getpid(), signal.SIGTERM)  # e.g. an impatient supervisor
                _spin()
                cleaned = True
    assert cleaned and caught.signum == signal.SIGINT


def test_a_signal_swallowed_in_a_finalizer_still_stops_the_run(monkeypatch):
    reported = []  # what Python would print as "Exception ignored in ..."
    monkeypatch.setattr(sys, "unraisablehook", reported.append)

    class SignalledWhileFinalized:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)
            _spin()  # the handler raises here, inside __del__, where Python drops the exception

    reached = False
    with pytest.raises(KeyboardInterrupt):
        with interrupts.handled() as caught:
            SignalledWhileFinalized()
            reached = True  # the run went on ...
            interrupts.check()  # ... until the next check
            pytest.fail("check() let a pending signal through")
    assert reached and caught.signum == signal.SIGTERM
    assert reported == []  # our own interrupt is not reported as an error

    with pytest.raises(KeyboardInterrupt):  # without any check, leaving handled() raises it
        with interrupts.handled():
            SignalledWhileFinalized()


def test_an_error_after_a_signal_is_reported_as_the_interruption():
    with pytest.raises(KeyboardInterrupt) as info:
        with interrupts.handled() as caught:
            with interrupts.deferred():  # the signal is recorded, not raised, here ...
                os.kill(os.getpid(), signal.SIGTERM)
                _spin()
                raise OSError("a library wrapped the interrupt")  # ... and something else fails
    assert caught.signum == signal.SIGTERM and isinstance(info.value.__cause__, OSError)
    with pytest.raises(ValueError):  # without a signal, errors pass through unchanged
        with interrupts.handled():
            raise ValueError("plain")


def test_deferred_sections_raise_at_their_end():
    order = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts.handled():
            with interrupts.deferred():
                os.kill(os.getpid(), signal.SIGINT)
                _spin()
                order.append("section finished")
            order.append("after the section")
    assert order == ["section finished"]


def test_interrupted_exit_codes_and_one_line():
    term = interrupts.Interrupted(signal.SIGTERM, "interrupted ({signal}); cleaned up")
    assert term.exit_code == 143 and str(term) == "interrupted (SIGTERM); cleaned up"
    assert interrupts.Interrupted(signal.SIGINT).exit_code == 130


def test_outside_the_main_thread_it_changes_nothing():
    seen = []

    def run():
        with interrupts.handled() as caught:
            seen.append((signal.getsignal(signal.SIGTERM), caught.signum))

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert seen == [(before, None)]


def test_a_signal_the_moment_the_handlers_are_in_place_belongs_to_the_block(monkeypatch):
    """A SIGTERM right after the handlers were installed escaped before the block began (exit 130
    instead of 143, handlers never restored): the flake of test_prepare_signals at 0 %."""
    real_signal = signal.signal
    sent = []

    def install_then_signal(signum, handler):
        previous = real_signal(signum, handler)
        if signum == signal.SIGTERM and callable(handler) and not sent:
            sent.append(signum)
            # to the main thread (a process-directed one may go to another thread of the suite)
            signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)  # the moment it is in place
        return previous

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(signal, "signal", install_then_signal)
    with pytest.raises(interrupts.Interrupted) as info:
        with interrupts.stopping("interrupted ({signal}); nothing left behind"):
            _spin()
            pytest.fail("the signal did not interrupt")
    monkeypatch.undo()
    assert sent and info.value.exit_code == 143 and str(info.value) == "interrupted (SIGTERM); nothing left behind"
    assert signal.getsignal(signal.SIGTERM) is before  # restored


def test_stopping_turns_any_keyboard_interrupt_into_one_line_and_130():
    with pytest.raises(interrupts.Interrupted) as info:
        with interrupts.stopping("interrupted ({signal}); cleaned up"):
            raise KeyboardInterrupt  # e.g. a library's own, no signal
    assert info.value.exit_code == 130 and str(info.value) == "interrupted (SIGINT); cleaned up"


def test_a_stop_request_records_the_first_signal_and_a_second_ctrl_c_abandons():
    announced = []
    before = signal.getsignal(signal.SIGINT)
    stop = interrupts.StopRequest(announce=announced.append).install()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        _spin()  # no KeyboardInterrupt: the loop stops at its next clean point
        assert stop.requested and stop.signum == signal.SIGTERM and announced == [signal.SIGTERM]
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            _spin()
    finally:
        stop.restore()
    assert signal.getsignal(signal.SIGINT) is before and interrupts.last_signal() == signal.SIGINT


def test_a_signal_after_the_command_returned_is_one_line_and_its_exit_code(monkeypatch, capsys):
    """A KeyboardInterrupt between the command's end and the shutdown escaped main() (a
    traceback, killed by SIGINT: exit -2)."""
    from harmonize_cli import cli

    def signalled_on_the_way_out(argv):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_run", signalled_on_the_way_out)
    with pytest.raises(SystemExit) as info:
        cli.main(["zoo", "list"])
    assert info.value.code == 130 and "interrupted (SIGINT)" in capsys.readouterr().err


def test_a_signal_while_the_shutdown_sets_ignore_is_absorbed(monkeypatch):
    """A SIGINT landing inside ``ignore_from_now`` (Python's handler still in place) raised out of
    main()'s ``finally`` over a finished run (a traceback, exit -2; seen in prepare's signal test)."""
    from harmonize_cli import cli

    calls = []

    def ignore_from_now():
        calls.append(len(calls))
        if len(calls) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(interrupts, "ignore_from_now", ignore_from_now)
    try:
        cli._finished()
    except KeyboardInterrupt:
        pytest.fail("the KeyboardInterrupt escaped _finished() over a finished run")
    assert calls == [0, 1]


def test_a_handled_interruption_exits_with_its_code_even_if_python_recorded_it_as_unhandled():
    """CPython's record of an unhandled KeyboardInterrupt made a handled Ctrl-C exit -2 (killed
    by SIGINT) after the one line and 130 (1 run in 12 of prepare's signal test)."""
    import subprocess

    code = ("import ctypes\nfrom harmonize_cli import cli\n"
            "ctypes.c_int.in_dll(ctypes.pythonapi, '_Py_UnhandledKeyboardInterrupt').value = 1\n"
            "cli._run = lambda argv: 130\ncli.main()\n")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 130


def test_the_console_script_freezes_the_heap_before_python_shuts_down():
    """``main()`` of the real process calls gc.freeze() once its command is done (the exit's
    garbage collection over torch's objects took 0.3 s); atexit handlers still run after it."""
    import subprocess
    import sys

    script = ("import atexit, gc, sys\n"
              "atexit.register(lambda: print('frozen' if gc.get_freeze_count() > 0 else 'not frozen', flush=True))\n"
              "from harmonize_cli.cli import main\n"
              "sys.argv = ['harmonize', '--version']\n"
              "main()\n")
    finished = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.splitlines()[-1] == "frozen"
    assert "harmonize" in finished.stdout  # the version line came first
