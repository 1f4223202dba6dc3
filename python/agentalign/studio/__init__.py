"""`agentalign studio`: the designers' web application on a run folder.

Label pairs of rollouts in the browser, watch a reward model learn which pairs to ask next, run
`align` as a background job, and watch the personalities play. Everything it writes lives in
RUN/studio/: the label store and its pool of rollouts (labels/), background jobs (jobs/), and
the personalities it trains (personalities/).
"""
