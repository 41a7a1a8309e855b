"""``python -m purejaxppo``: trains and reports; bad input is a one-line error, exit 2."""

import pytest

from purejaxppo.__main__ import main


def test_trains_and_reports(capsys):
    assert main(["--seeds", "2", "--total-timesteps", "1024"]) == 0
    out = capsys.readouterr().out
    assert "Training PPO on CartPole-v1: 2 seeds x 1,024 steps" in out
    assert "final return (mean of last 10% of updates) per seed:" in out
    assert "env steps/s" in out


def test_unknown_env_exits_2_with_one_line(capsys):
    assert main(["--env", "Cartpole"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: env_name='Cartpole' is not a registered gymnax environment")
    assert err.count("\n") == 1


def test_bad_flag_value_exits_2():
    with pytest.raises(SystemExit) as info:
        main(["--seeds", "0"])
    assert info.value.code == 2
