"""Methodology: every number RelQ shows, in plain words, with its formula and when to trust it."""

import streamlit as st

from relq import ui

ui.framed()  # first: a fresh server's first request is served through the frame

MIN_N = ui.min_n()

st.title("Methodology")
st.markdown(
    "Every number in RelQ is defined here: what it means in plain words, how it is computed, and when "
    "to trust it. Every score on screen carries its **n** (how many answers it rests on) and its "
    "**95% interval** (the range the true value plausibly lies in, given the sample). Intervals and tests "
    "treat each **customer** as the unit (below). All figures are computed inside the database from counts and "
    "sums, so they are identical on the embedded store and on PostgreSQL."
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
        "The unit is the customer: customer-clustered intervals",
        "A relationship is an account. Several people at one customer answer the survey, and they answer "
        "wave after wave, so their responses are not independent: colleagues at a customer who trusts you tend "
        "to say so together. On the demo company a customer gives about 7 responses and the correlation "
        "between two responses of the same customer is about 0.5. Treating every response as independent "
        "would make intervals 2–3 times too narrow. So every interval and test in RelQ treats each **customer "
        "as a cluster** (a response that matches no customer is a cluster of its own). For a (weighted) mean "
        "over the responses having the score, with one sum per customer c and C customers:",
        [
            r"\bar y = \frac{\sum_i w_i y_i}{\sum_i w_i}, \qquad t_c = \sum_{i \in c} w_i\,(y_i - \bar y)",
            r"\widehat{\operatorname{var}}(\bar y) = \frac{C}{C-1} \cdot \frac{\sum_c t_c^2}{\left(\sum_i w_i\right)^2}",
        ],
        "This is the linearised (“ultimate cluster”) variance that Stata computes with "
        "`mean y [pw=w], vce(cluster customer)` and R with `survey::svymean(~y, svydesign(ids = ~customer, "
        "weights = ~w, data = d))`. It needs only sums per customer, so the database computes it in two "
        "steps — per customer first, then over customers — and never ships responses. Those per-customer sums "
        "add up across months, so after each change of the data RelQ also stores them per customer, month, "
        "wave and quality flag, and a view whose dates start and end on month boundaries (the default, a "
        "quarter, a year) sums those few rows instead of every response; the numbers are the same up to floating-point "
        "rounding. With one response per customer it is exactly the usual s²/n.",
    ),
    (
        "Means and their t-interval (pillars, RQ, CES)",
        "The average over the responses submitted in the period (dates inclusive) that have the score, with "
        "a 95% interval from Student's t distribution on C − 1 degrees of freedom (C customers).",
        [r"\bar y \pm t_{0.975,\,C-1} \cdot \sqrt{\widehat{\operatorname{var}}(\bar y)}"],
        f"Reliable for n ≥ {MIN_N}; with fewer answers the score is greyed and never ranked. Every score shows "
        "its n and its customers: “n = 11,883 responses from 3,201 customers”.",
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
        "Above 0.90 RelQ warns that two pillars are hard to tell apart (Henseler, Ringle & Sarstedt 2015). "
        "Its 95% interval comes from resampling customers with replacement (all of a customer's responses "
        "together, 200 seeded resamples) and recomputing HTMT each time; judge the warning by the interval.",
    ),
    (
        "Effective n and the design effect",
        "How many independent responses a score is worth. The design effect compares the customer-clustered "
        "variance with the variance the same responses would have if they were independent; the effective n "
        "divides n by it (never above n). The Measurement page lists both for every score, with the "
        "intra-customer correlation ρ they imply.",
        [
            r"\text{deff} = \frac{\widehat{\operatorname{var}}}{u/(n-1)},\quad "
            r"u = p(1-p)\ \text{(CSAT)},\quad u = p + d - (p-d)^2\ \text{(NPS)},\qquad "
            r"n_{\text{eff}} = \min\!\left(n,\ \frac{n}{\text{deff}}\right)",
            r"\text{deff} \approx 1 + (m^* - 1)\,\rho, \qquad m^* = \frac{\sum_c n_c^2}{\sum_c n_c}",
        ],
        "A design effect of 4 means 4,000 responses carry as much information as 1,000 independent ones. "
        "Hover a score card to see its effective n.",
    ),
    (
        "NPS and its adjusted-Wald interval",
        "Net Promoter Score: the share of promoters (9–10 on “How likely are you to recommend…”) minus the "
        "share of detractors (0–6), in points from −100 to 100 (weighted shares p and d under a weighting). "
        "The interval is the adjusted Wald interval on the effective n.",
        [
            r"\text{NPS} = 100 \cdot (p - d)",
            r"n^* = n_{\text{eff}} + 3,\quad p^* = \frac{p\,n_{\text{eff}} + 3/4}{n^*},\quad "
            r"d^* = \frac{d\,n_{\text{eff}} + 3/4}{n^*},\quad se = \sqrt{\frac{p^* + d^* - (p^* - d^*)^2}{n^*}}",
            r"100 \cdot \left((p^* - d^*) \pm 1.96 \cdot se\right)",
        ],
        "Example with one response per customer (n_eff = n): 50 promoters, 30 passives, 20 detractors give NPS 30 "
        "with interval about [14, 44] — NPS moves a lot with small samples, so read the interval.",
    ),
    (
        "CSAT and its Wilson interval",
        "Customer satisfaction: the percentage answering 4 or 5 on the 1–5 satisfaction question "
        "(top-2-box), with Wilson's score interval on the effective n, which stays sensible near 0% and 100%. "
        "Comment sentiment shares (Voice of the customer) use the same interval.",
        [
            r"\hat p = \text{share answering 4–5}, \qquad "
            r"\frac{\hat p + \frac{z^2}{2n_{\text{eff}}} \pm z\sqrt{\frac{\hat p(1-\hat p)}{n_{\text{eff}}} + "
            r"\frac{z^2}{4n_{\text{eff}}^2}}}{1 + z^2/n_{\text{eff}}}"
        ],
        f"Reliable for n ≥ {MIN_N}. With one response per customer n_eff = n and this is the plain Wilson interval.",
    ),
    (
        "CES",
        "Customer effort score: the mean answer on the 1–7 effort question, with the customer-clustered "
        "t-interval of the means above. Lower means less effort, so lower is better (segments rank lowest "
        "first).",
        [r"\overline{\text{CES}} \pm t_{0.975,\,C-1}\, \sqrt{\widehat{\operatorname{var}}}"],
        f"Reliable for n ≥ {MIN_N}; shown with two decimals.",
    ),
    (
        "Weights: what each way of counting answers",
        "The sidebar's **Count each** sets how much each response weighs; every interval still treats each "
        "customer as a cluster. **Response** (the default): each response counts once — *what do our responses "
        "say*; customers who send many people weigh more. **Customer**: each customer counts once — *what does "
        "the average customer feel*; a response weighs 1 / (that customer's responses in view having the "
        "score). **Annual value**: each customer weighs its annual value, split the same way — *what does our "
        "revenue feel*. **Raked to the customer base**: customer weights by iterative proportional fitting, "
        "so that on each chosen dimension (default region and plan) the responding customers match the "
        "customer base — customers acquired on or before the period's last day (or without a date) and not "
        "churned before its first day — *what would the whole customer base say*.",
        [
            r"w_i = \frac{\omega_c}{n_c^{(\text{score})}}, \qquad \omega_c = 1 \ \text{(customer)},\ "
            r"\text{annual value}_c\ \text{(value)},\ \text{raked weight}_c\ \text{(raked)}",
            r"\text{Kish design effect of the weights} = \frac{m \sum_c \omega_c^2}{\left(\sum_c \omega_c\right)^2}",
        ],
        "Weights are treated as fixed in the variance. Responses that match no customer carry no customer "
        "weight and are left out of customer, value and raked figures — the screen says how many. A "
        "dimension value present in the base with no responding customer cannot be raked: RelQ says which and "
        "shows no raked number. The Measurement page shows the raking's target and achieved margins, the "
        "weight range and its Kish design effect; a large design effect means a few customers carry much "
        "weight.",
    ),
    (
        "Comparisons: segment vs rest, period vs previous",
        "A segment is compared with all other responses in view; a period with the previous period of equal "
        "length. Means (pillars, RQ, CES): Welch's t with the customer-clustered variances and Satterthwaite's "
        "degrees of freedom on the customers. NPS and CSAT: a z-test on the difference with the clustered "
        "variances. Period vs previous: the same customer often answers in both periods, so the difference is "
        "linearised over the customers of both.",
        [
            r"t = \frac{\bar y_1 - \bar y_2}{\sqrt{v_1 + v_2}},\quad "
            r"df = \frac{(v_1 + v_2)^2}{\frac{v_1^2}{C_1 - 1} + \frac{v_2^2}{C_2 - 1}}",
            r"z_{\text{NPS}} = \frac{\text{NPS}_1 - \text{NPS}_2}{100\sqrt{v_1 + v_2}}",
            r"\widehat{\operatorname{var}}(\bar y^{(1)} - \bar y^{(2)}) = \frac{C}{C-1}\sum_c "
            r"\left(\frac{t_c^{(1)}}{W_1} - \frac{t_c^{(2)}}{W_2}\right)^2",
        ],
        "A delta is marked significant only when its Benjamini–Hochberg q-value (below) is under 0.05; the "
        "screen names the test and the family the q-value was computed over.",
    ),
    (
        "Benjamini–Hochberg q-values",
        "When many deltas are shown together, some would look different by chance alone. Benjamini–Hochberg "
        "adjusts the p-values so that, among the deltas marked significant, at most 5% are expected to be false "
        "alarms.",
        [r"q_{(i)} = \min_{j \ge i} \min\!\left(1,\ \frac{m \, p_{(j)}}{j}\right)"],
        "The family is what is shown together: a segment table per score across the dimension's values; the "
        "overview's cards across the cards; the segments that moved most across every segment and score tested.",
    ),
    (
        "Why fewer deltas are significant now",
        "Earlier versions of RelQ treated every response as independent. With about 7 responses per customer "
        "and a correlation of about 0.5 between them, their intervals were 2–3 times too narrow and many "
        "differences looked certain that are not: on the demo company trust read ±0.14 where the "
        "customer-clustered interval is ±0.40, and 325 of 532 segment deltas were marked significant where 189 "
        "are. Retail's RQ of −1.1 against the rest had p = 10⁻¹¹; counted by customers it is p = 0.02 and, "
        "among the seven industries, q = 0.07 — a lead to watch, not a finding.",
        [],
        "A delta that stays significant under customer clustering and Benjamini–Hochberg is one an executive "
        "can act on.",
    ),
    (
        "Key drivers (Shapley / LMG) and their bootstrap",
        "How much of NPS's variance each pillar explains: each pillar's gain in R² averaged over every order of "
        "entering a regression of NPS on the pillars, computed exactly on every response in view. The 95% "
        "intervals come from a bootstrap that resamples customers — all of a customer's responses together — "
        "with a fixed seed; the page states how many resamples it drew.",
        [
            r"\phi_j = \sum_{S \subseteq P \setminus \{j\}} \frac{|S|!\,(p - |S| - 1)!}{p!}"
            r"\left(R^2_{S \cup \{j\}} - R^2_S\right)"
        ],
        "A pillar's share of R² says where NPS comes from in your data, not what causes it.",
    ),
    (
        "Small-sample rules",
        f"A score with n below {MIN_N} (the configurable minimum, RELQ_MIN_N) is shown greyed with its n "
        "and never ranked or marked significant. Executives never see a number about fewer than 5 "
        "customers: a number describes a group — the view the filters select (from the sidebar or a URL), "
        "a period, a segment, a cohort, a quadrant, a survival curve, the users of a word — and when that "
        "group holds fewer than 5 customers (respondents: a response matched to no customer counts as "
        "one), the whole view shows one sentence instead, or the group is left out of charts, tables, "
        "downloads and the board report. Counts and shares of the customers within a group of 5 or more "
        "are shown. Executives also never see a customer list, a comment word for word, or (unless an "
        "admin allows it) a split by account owner.",
        [],
        "Small groups can still be read with their (wide) intervals by CX leads and analysts.",
    ),
    (
        "Gap quadrants",
        "Each customer's latest response in the period that has both pillars places them in one of four "
        "quadrants: “high” means an index at or above the threshold (default 50, the scale midpoint; a "
        "business target or the median can be chosen). The default pair is trust × satisfaction; "
        "satisfaction × commitment and trust × commitment are also shown. Each quadrant has a name and a "
        "recommended action — e.g. high trust / low satisfaction: fix what dissatisfies customers who still "
        "trust you. After each change of the data RelQ also stores each customer's latest response for each "
        "pair, so a view of the whole history with every wave and flag (a segment or a quadrant may be "
        "chosen) reads those rows instead of ranking every response: the same customers and scores.",
        [],
        "Customers close to the threshold could fall on either side; treat borderline counts as uncertain.",
    ),
    (
        "Cohorts",
        "A customer's cohort is the month they were acquired (else the month of their first purchase). "
        "The active share k months later is the share of the cohort with at least one purchase in calendar "
        "month cohort + k, with its Wilson 95% interval. Only complete months count: when the data end "
        "before the last day of their last month, that month is shown marked as partial (*) and left out "
        "of the report — a 3-day month would look like a collapse.",
        [
            r"\text{active\_share}[k] = \frac{\#\{\text{cohort customers buying in month } c + k\}}{\text{cohort size}}"
        ],
        "Young cohorts have few months of data; small cohorts are noisy. Where churn dates exist, survival "
        "(below) is the contractual view.",
    ),
    (
        "Retention rate",
        "Of the customers active at the start of a period (acquired before it and not churned before it), "
        "the share still active at its end, with its Wilson 95% interval. Customers won and lost inside the "
        "period are shown beside it — how many joined, and how many of those left within it — but never "
        "mixed into the rate. Churn is the complementary share: customers at the start who churned in the "
        "period. The report gives the last complete calendar quarter.",
        [r"\text{retention} = \frac{\#\{\text{active at start and at end}\}}{\#\{\text{active at start}\}}"],
        "Needs both acquisition and churn dates to be complete (without churn dates a customer counts as "
        "churned once twice the at-risk days pass without a purchase).",
    ),
    (
        "Survival (Kaplan–Meier)",
        "Where churn dates exist, the contractual view: the probability that a customer is still a customer "
        "t months later, counting customers who have not churned by the data's end as censored (still "
        "observed, outcome unknown). Split by a customer's plan, region or other CRM field, the clock starts "
        "at acquisition. Split by anything a survey measured — quadrant, a pillar's level, NPS group — the "
        "clock starts at the survey that placed the customer (a landmark): each customer is placed by their "
        "first answer in the period that has the measure and followed from that day. Starting the clock at "
        "acquisition instead would credit a customer with the months they had to survive to answer "
        "(immortal time). A customer who churned on or before the day of that survey was not at risk and is "
        "left out, and the screen counts them with why. The median lifetime carries its Brookmeyer–Crowley "
        "95% interval: the times whose 95% band contains one half.",
        [r"\hat S(t) = \prod_{t_i \le t} \left(1 - \frac{d_i}{n_i}\right)"],
        "The curve is reliable while many customers are still at risk; its band widens at long durations.",
    ),
    (
        "Cox proportional hazards",
        "How much each pillar changes the churn hazard, as a hazard ratio: below 1 means customers scoring "
        "higher churn more slowly. Followed from the same landmark as the survey splits: the first answer in "
        "the period that has all three pillars, which also gives the pillar values.",
        [r"h(t \mid x) = h_0(t)\, \exp(\beta^\top x), \qquad \text{HR} = e^{\beta}"],
        "Trust a hazard ratio when its interval excludes 1 and the proportional-hazards check passes; it "
        "shows association, not cause.",
    ),
    (
        "At risk",
        "An active customer is at risk for any of three reasons, each stated per customer: no purchase in the "
        "last 90 days (configurable, RELQ_AT_RISK_DAYS — the same boundary as the lifecycle stage); their "
        "account's RQ fell — the mean RQ of its latest survey wave is below its previous wave's by more than "
        "the 95% interval of that change, comparing like with like: the same respondents where at least two "
        "answered both waves (paired t-interval), else each wave's respondents (Welch); or their latest wave "
        "has more detractors (0–6) than promoters (9–10). A wave is the survey's wave, else the calendar "
        "quarter; a person who answered twice in a wave counts once. After each change of the data RelQ "
        "stores every account's latest two waves, which a view of the whole history with every wave and "
        "flag reads instead of grouping every response: the same waves, respondents and intervals.",
        [],
        "An account with a single respondent per wave cannot show a fall beyond its interval: read its "
        "answers, not the rule. The list is sorted by churn risk (below) when there is a score.",
    ),
    (
        "Churn risk",
        "For each active customer, the probability of churning within the next 90 days (the horizon can be "
        "changed), from what the store knew on that day: the account's latest-wave trust, commitment and "
        "satisfaction and its RQ change, the latest wave's NPS, days since the last purchase (and the 90-day "
        "rule itself), purchases and revenue in the last 12 months, support tickets (recent, open, first-"
        "response hours), tenure, plan, region and industry. The model is a Cox proportional-hazards model "
        "fitted on monthly snapshots of the customers then active, each followed for the horizon. Each score "
        "lists the factors that raise it most against the median customer on the same plan, e.g. “trust 18 "
        "points below the plan's median: +40 % hazard”.",
        [r"P(\text{churn within } h \mid x) = 1 - S_0(h)^{\exp(\beta^\top (x - \bar x))}"],
        "Judge it by its backtest, on the Retention page: the model is fitted only on what was known by the "
        "data's end minus the horizon, then scores the customers active that day, and is compared with who "
        "churned by the end — C-index and AUC with bootstrap intervals over customers, the Brier score, "
        "calibration by tenth of predicted risk, and the gain over the “no purchase in 90 days” rule alone "
        "with the interval of the difference. With fewer than 100 churned customers in a training window "
        "there is no score. It ranks customers to call; it does not say why a customer leaves. Today's "
        "scores are fitted once after each change of the data (an import, an undo, the demo company's load, "
        "a theme or questionnaire edit) and kept in the store with the data version they came from, so the "
        "at-risk list reads them rather than fitting again. Each customer's purchases summed and the answers "
        "pivoted to one row per response are kept the same way and read only while their data version is "
        "the current one; they give the same numbers as the purchases and answers themselves.",
    ),
    (
        "Customer lifetime value ahead",
        "For a segment's active customers: the expected remaining months, the restricted mean residual "
        "lifetime from the segment's Kaplan–Meier curve at each customer's current age (up to the longest "
        "follow-up in the data), times the segment's revenue per customer-month. Both carry 95% intervals "
        "from 200 seeded bootstrap resamples of the segment's customers.",
        [r"\text{remaining}(a) = \frac{\int_a^{\tau} \hat S(t)\,dt}{\hat S(a)}"],
        "Beyond the longest follow-up the data say nothing, so the estimate is capped there.",
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
