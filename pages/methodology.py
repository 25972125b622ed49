"""Methodology: every number RelQ shows, in plain words, with its formula and when to trust it."""

import streamlit as st

from relq import ui

ui.framed()  # first: a fresh server's first request is served through the frame

MIN_N = ui.min_n()

st.title("Methodology")
st.markdown(
    "Every number in RelQ is defined here: what it means in plain words, how it is computed, and when "
    "to trust it. Every score on screen carries its **n** (how many answers it rests on) and its "
    "**95% interval** (the range the true value plausibly lies in, given the sample). "
    "All figures are computed inside the database from counts and sums, so they are identical on the "
    "embedded store and on PostgreSQL."
)

SECTIONS: list[tuple[str, str, list[str], str]] = [
    (
        "Pillar index (trust, commitment, satisfaction)",
        "How strongly a customer agrees with the questionnaire's items about one pillar, on a 0–100 scale. "
        "Reverse-keyed items (worded negatively, e.g. *“We regret choosing this company”*) are turned "
        "around first. A response gets an index only when it answered at least two thirds of the pillar's "
        "items.",
        [
            r"x' = \text{min} + \text{max} - x \quad \text{(reverse-keyed items)}",
            r"\text{index} = 100 \cdot \frac{\bar{x}' - \text{min}}{\text{max} - \text{min}}"
            r"\quad \text{when at least } \lceil 2k/3 \rceil \text{ of the } k \text{ items are answered}",
        ],
        "Computed when a survey is imported and again whenever an analyst edits the questionnaire. "
        "Trust it when the pillar's α (below) is acceptable.",
    ),
    (
        "Relationship quality (RQ)",
        "The overall strength of the relationship: the average of the three pillar indices of a response.",
        [r"\text{RQ} = \tfrac{1}{3}(\text{trust} + \text{commitment} + \text{satisfaction})"],
        "Only responses with all three pillar indices have an RQ.",
    ),
    (
        "Means and their t-interval (pillars, RQ, CES)",
        "The average over the responses submitted in the period (dates inclusive) that have the score, "
        "with a 95% interval from Student's t distribution.",
        [
            r"\bar{x} \pm t_{0.975,\,n-1} \cdot \frac{s}{\sqrt{n}}, \qquad s^2 = \frac{\sum x^2 - (\sum x)^2/n}{n-1}"
        ],
        f"Reliable for n ≥ {MIN_N}; with fewer answers the score is greyed and never ranked.",
    ),
    (
        "Cronbach's α and its Feldt interval",
        "How consistently a pillar's items measure the same thing: near 1 when customers who agree with one "
        "item also agree with the others. Computed over responses answering all the pillar's items, after "
        "reverse coding.",
        [
            r"\alpha = \frac{k}{k-1}\left(1 - \frac{\sum_i \sigma_i^2}{\sigma^2_{\text{total}}}\right)",
            r"\left[\,1 - (1-\alpha)\,F_{0.975}(n-1,\,(n-1)(k-1)),\;"
            r"1 - (1-\alpha)\,F_{0.025}(n-1,\,(n-1)(k-1))\,\right]",
        ],
        "Above 0.70 is usually acceptable for comparing groups, above 0.80 good. A low α means the pillar "
        "index mixes different things; look at the item statistics.",
    ),
    (
        "Corrected item–total correlation and α if item deleted",
        "For each item: how well it agrees with the sum of the pillar's *other* items, and what α would be "
        "without it. An item whose removal would raise α, or whose item–total r is below 0.30, weakens the "
        "pillar (the Measurement page highlights it).",
        [r"r_{i,\,\text{rest}} = \operatorname{corr}\!\left(x_i,\ \textstyle\sum_{j \ne i} x_j\right)"],
        "A reverse-keyed item that customers misread is the most common cause of a weak item.",
    ),
    (
        "Pillar correlations",
        "Pearson's r between two pillar indices over responses having both, with a 95% interval from "
        "Fisher's z transformation.",
        [r"\tanh\!\left(\operatorname{atanh} r \pm \frac{1.96}{\sqrt{n-3}}\right)"],
        "Pillars of one relationship correlate; a very high r (above about 0.9) suggests customers do not "
        "distinguish them.",
    ),
    (
        "HTMT (heterotrait–monotrait ratio)",
        "Whether two pillars are really distinct: the average correlation between items of different "
        "pillars, relative to the average correlation between items of the same pillar.",
        [
            r"\text{HTMT}_{AB} = \frac{\overline{r}_{ij,\ i \in A,\ j \in B}}"
            r"{\sqrt{\overline{r}_{ij,\ i<j \in A} \cdot \overline{r}_{ij,\ i<j \in B}}}"
        ],
        "Above 0.90 RelQ warns that two pillars are hard to tell apart (Henseler, Ringle & Sarstedt 2015).",
    ),
    (
        "NPS and its adjusted-Wald interval",
        "Net Promoter Score: the share of promoters (9–10 on “How likely are you to recommend…”) minus the "
        "share of detractors (0–6), in points from −100 to 100.",
        [
            r"\text{NPS} = 100 \cdot \frac{P - D}{n}",
            r"n^* = n + 3,\quad p^* = \frac{P + 3/4}{n^*},\quad d^* = \frac{D + 3/4}{n^*},\quad "
            r"se = \sqrt{\frac{p^* + d^* - (p^* - d^*)^2}{n^*}}",
            r"100 \cdot \left((p^* - d^*) \pm 1.96 \cdot se\right)",
        ],
        "Example: 50 promoters, 30 passives, 20 detractors give NPS 30 with interval about [14, 44] — "
        "NPS moves a lot with small samples, so read the interval.",
    ),
    (
        "CSAT and its Wilson interval",
        "Customer satisfaction: the percentage answering 4 or 5 on the 1–5 satisfaction question "
        "(top-2-box), with Wilson's score interval, which stays sensible near 0% and 100%.",
        [
            r"\hat p = \frac{\#\{4, 5\}}{n}, \qquad "
            r"\frac{\hat p + \frac{z^2}{2n} \pm z\sqrt{\frac{\hat p(1-\hat p)}{n} + \frac{z^2}{4n^2}}}{1 + z^2/n}"
        ],
        f"Reliable for n ≥ {MIN_N}.",
    ),
    (
        "CES",
        "Customer effort score: the mean answer on the 1–7 effort question, with a t-interval. Lower means "
        "less effort, so lower is better (segments rank lowest first).",
        [r"\overline{\text{CES}} \pm t_{0.975,\,n-1}\, s/\sqrt{n}"],
        f"Reliable for n ≥ {MIN_N}.",
    ),
    (
        "Comparisons: segment vs rest, period vs previous",
        "A segment is compared with all other filtered responses; a period with the previous period of "
        "equal length. NPS differences use a z-test on the adjusted-Wald variances; CSAT differences "
        "Newcombe's interval (from the two Wilson intervals) and the two-proportion z-test; means (pillars, "
        "RQ, CES) Welch's t-test, which does not assume equal variances.",
        [
            r"z_{\text{NPS}} = \frac{\text{NPS}_1 - \text{NPS}_2}{100\sqrt{se_1^2 + se_2^2}}",
            r"t = \frac{\bar x_1 - \bar x_2}{\sqrt{s_1^2/n_1 + s_2^2/n_2}},\quad "
            r"df = \frac{(s_1^2/n_1 + s_2^2/n_2)^2}{\frac{(s_1^2/n_1)^2}{n_1-1} + \frac{(s_2^2/n_2)^2}{n_2-1}}",
        ],
        "A delta is marked significant only when its q-value (below) is under 0.05. A period "
        "comparison is one question per score, so there q equals p.",
    ),
    (
        "Benjamini–Hochberg q-values",
        "When many segments are compared at once, some would look different by chance alone. "
        "Benjamini–Hochberg adjusts the p-values so that, among the deltas marked significant, at most 5% "
        "are expected to be false alarms.",
        [r"q_{(i)} = \min_{j \ge i} \min\!\left(1,\ \frac{m \, p_{(j)}}{j}\right)"],
        "Applied per score across the segments of a dimension that are not small.",
    ),
    (
        "Small-sample rules",
        f"A score with n below {MIN_N} (the configurable minimum, RELQ_MIN_N) is shown greyed with its n "
        "and never ranked or marked significant. A group of fewer than 5 customers is never shown to "
        "executives.",
        [],
        "Small groups can still be read with their (wide) intervals by analysts.",
    ),
    (
        "Gap quadrants",
        "Each customer's latest response in the period that has both pillars places them in one of four "
        "quadrants: “high” means an index at or above the threshold (default 50, the scale midpoint; a "
        "business target or the median can be chosen). The default pair is trust × satisfaction; "
        "satisfaction × commitment and trust × commitment are also shown. Each quadrant has a name and a "
        "recommended action — e.g. high trust / low satisfaction: fix what dissatisfies customers who still "
        "trust you.",
        [],
        "Customers close to the threshold could fall on either side; treat borderline counts as uncertain.",
    ),
    (
        "Cohorts",
        "A customer's cohort is the month they were acquired (else the month of their first purchase). "
        "The active share k months later is the share of the cohort with at least one purchase in calendar "
        "month cohort + k.",
        [
            r"\text{active\_share}[k] = \frac{\#\{\text{cohort customers buying in month } c + k\}}{\text{cohort size}}"
        ],
        "Young cohorts have few months of data; small cohorts are noisy.",
    ),
    (
        "Retention rate",
        "The share of the customers at the start of a period who are still customers at its end, "
        "not counting customers who joined during the period.",
        [
            r"\text{retention} = \frac{\text{customers at end} - \text{new in period}}{\text{customers at start}}"
        ],
        "Needs both acquisition and churn dates to be complete.",
    ),
    (
        "Survival (Kaplan–Meier)",
        "Where churn dates exist, the contractual view: the probability that a customer is still a customer "
        "t months after acquisition, counting customers who have not churned by the data's end as censored "
        "(still observed, outcome unknown).",
        [r"\hat S(t) = \prod_{t_i \le t} \left(1 - \frac{d_i}{n_i}\right)"],
        "The curve is reliable while many customers are still at risk; its band widens at long durations.",
    ),
    (
        "Cox proportional hazards",
        "How much each pillar (and other factors) changes the churn hazard, as a hazard ratio: below 1 means "
        "customers scoring higher churn more slowly.",
        [r"h(t \mid x) = h_0(t)\, \exp(\beta^\top x), \qquad \text{HR} = e^{\beta}"],
        "Trust a hazard ratio when its interval excludes 1 and the proportional-hazards check passes; it "
        "shows association, not cause.",
    ),
    (
        "At risk",
        "Active customers with no purchase in the last 90 days (configurable, RELQ_AT_RISK_DAYS), a falling "
        "RQ, or a detractor answer.",
        [],
        "A list to act on, not a prediction.",
    ),
    (
        "Cases and alerts",
        "A case is due its reason's SLA in business days (Monday to Friday) after it was opened; a case open "
        "or contacted past that day is overdue. An alert rule watches one score over a rolling window ending "
        "on the latest survey day. *Falls / rises / changes significantly* compares it with the window of "
        "equal length before, by the customer-linearised period z-test of *Comparisons* (p < 0.05, in the "
        "rule's direction); *below / above* compares the window's estimate, shown with its 95% interval, "
        "with a number. A window with fewer answers than the small-sample minimum, or fewer than 5 "
        "customers, never fires. An alert fires once per change: when its condition holds now and did not "
        "at the previous evaluation.",
        [r"\operatorname{var}(d) = \tfrac{C}{C-1} \sum_c \big(t_c^{1}/W_1 - t_c^{2}/W_2\big)^2"],
        "An alert says a number moved beyond its noise; open the linked view to see where and why.",
    ),
    (
        "Did the calls work?",
        "For each closed case, the customer's next survey answer after the contact day (NPS, RQ) and being "
        "still a customer 90 days later are compared with the customers who never had a case and, on that "
        "day, had the same plan and, in their latest answer before it, the same trust × satisfaction "
        "quadrant, NPS group and 10-point RQ band (coarsened exact matching). Per case, the difference "
        "between the contacted customer and the mean of their comparison customers; the mean difference "
        "over cases has a t-interval with each customer as a cluster.",
        [r"\hat\delta = \tfrac{1}{n}\sum_{k} \Big(y_k - \tfrac{1}{|M_k|}\sum_{j \in M_k} y_j\Big)"],
        "Observational: nobody chose at random whom to call, so whatever led the team to call some customers "
        "and not others can still differ between the groups. Treat a difference as a lead to test, not as proof.",
    ),
    (
        "Data-quality flags",
        "Responses are flagged as duplicates (re-submitted by the same respondent), speeders (answered "
        "implausibly fast), straight-liners (the same answer to every item) or out of range (values outside "
        "the scale). Flags are shown and can be used as a filter, but never silently remove a response: "
        "by default every stored response counts, and excluding flagged ones is your visible choice.",
        [],
        "If excluding flagged responses changes a score a lot, report both.",
    ),
    (
        "Comment themes",
        "A comment's themes come from rules and from discovery, and are stored for every page and the "
        "sidebar's theme filter. A rule is phrases and exclusions: a phrase is found with accents and case "
        "folded (é = e, ß = ss) at word boundaries, word* matches any ending, /…/ is a regular expression; "
        "the text an exclusion matches is blanked before the phrases are looked for. Discovery cuts comments "
        "into sentences, weighs their words by TF-IDF (English, French, German and Spanish stop words left "
        "out) and factorises them by NMF (seeded) on a sample of at most 50,000 comments; a theme that "
        "explains at least a fifth of a sentence is one of its comment's themes. Comments in another "
        "language are counted as not themed. The **share** of a theme is the responses mentioning it among "
        "the responses with a comment, with a Wilson interval on the effective n (each customer a cluster). "
        "**NPS and pillars with vs without** compare, among responses with a comment, those mentioning the "
        "theme with the others; a customer often writes both kinds, so the difference is linearised over "
        "the customers of both groups (the slope of an OLS on an indicator of the theme with a "
        "cluster-robust variance by customer), z-test, Benjamini–Hochberg across the themes. **Impact** is "
        "how many points the NPS in view would gain if the theme's detractors scored like the average "
        "response; themes are ranked by it.",
        [
            r"\text{impact} = 100\,\bar a\,(1+\bar y), \quad \bar a = \frac{\text{detractors mentioning it}}"
            r"{\text{responses with an NPS}}, \quad \bar y = \frac{\text{NPS}}{100}",
            r"\operatorname{var}(\delta) = \frac{C}{C-1}\sum_c \Big(\frac{t_c^{1}}{W_1} - \frac{t_c^{0}}{W_0}\Big)^2",
        ],
        "A theme's delta shows association, not cause: customers unhappy for other reasons may also complain "
        "about price. Read a discovered theme's comments before naming it; promote it to a rule to keep it "
        "stable. Themes with fewer NPS answers than the minimum n are not ranked.",
    ),
]

st.markdown("**Contents:** " + " · ".join(title for title, *_ in SECTIONS))
for title, plain, formulas, trust in SECTIONS:
    st.header(title, divider="gray")
    st.markdown(plain)
    for formula in formulas:
        st.latex(formula)
    st.markdown(f"**When to trust it.** {trust}")
