"""Position management: what to do with an open spread at a tick, as pure decisions.

``manage.decide`` looks at one position (``PositionView``: its prices, Greeks and what has been
done to it) and the rules (``ManageRules``), and returns at most one ``Action`` with the reason
and the numbers behind it. In priority order:

1. time: at or below ``close_dte`` days to expiry, and on the expiry day unless the rules hold
   short legs into expiry;
2. stops: a loss of ``stop_multiple`` x the premium, the underlying through a short strike, a
   short leg's delta past ``short_delta_stop``;
3. roll: a tested spread (a short leg's delta at ``roll.when_short_delta``) is closed and the
   same structure opened further out in time and away in strike (``rolls.choose_roll``), for a
   net credit or at most ``roll.max_debit``;
4. profit ladder: scale out at each rung (fractions of max profit), the quantity split across
   the rungs (``ladder_plan``), the last rung closing what is left; once a rung is hit, what is
   left is closed when the profit falls ``trail`` (of max profit) below its peak;
5. repair: close part of a loser (``repair.reduce_at_loss`` of max loss), add to a winner
   (``repair.add_at_profit``; off by default), each once per position.

The account engine (``thetadesk.account``) builds the views, records each decision in the
ledger's ``decisions`` table and sends the orders through the risk gate.
"""

from thetadesk.positions.manage import Action, PositionView, decide, ladder_plan
from thetadesk.positions.rolls import RollPlan, choose_roll
from thetadesk.positions.rules import ManageRules, RepairRules, RollRules

__all__ = ["Action", "ManageRules", "PositionView", "RepairRules", "RollPlan", "RollRules",
           "choose_roll", "decide", "ladder_plan"]
