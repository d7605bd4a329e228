# cython: language_level=3
"""Scoring lines: every enabled indicator, the combined score and the reasons, in one
pass per line without the GIL.

Each indicator is one inline function below (its Python side, with what it declares,
is a module of ``ceecore.indicators``); :func:`score_lines` calls the enabled ones per
line and combines their weighted strengths. The model's lookups (keyed tallies and
norm arrays) are bound once into a :class:`ScoringContext`, which any number of
threads may share: scoring only reads it.

Arithmetic follows the plain reference (``tests/scoring_reference.py``) step by step,
in double precision; missing values are NaN, and a strength is 0 where its input is.
"""

from libc.math cimport NAN, cbrt, erfc, exp, fabs, fmax, fmin, isnan, log10, log1p, sqrt
from libc.stdint cimport int64_t, uint64_t

import numpy as np

cimport numpy as cnp

from ceecore._kernels._combine cimport combine_row
from ceecore._kernels._keys cimport (
    ANY_ORIGIN, acct_port_key, ap_day_key, ap_key, claim_key, cls_group_key, cls_hts_key, cls_hts_port_key, cls_port_key,
    dearest_hts, dearest_rate, duty_key, earliest_key, floor_div, month_key, origin_key, uv_group,
)
from ceecore._kernels._tally cimport Tally, TallyTable, tally_find, tally_prefetch

cnp.import_array()

# The kernel's indicators, raw values and thresholds, by id (the registry in
# ceecore.indicators names which of these each indicator is and reads).
INDICATOR_IDS = {name: i for i, name in enumerate((
    "unit_value_low", "unit_value_outlier", "duty_below_peers", "preference_rare", "origin_rare", "origin_switch",
    "classification_disparity", "port_spread", "new_importer", "volume_surge", "port_unit_value_low",
    "classification_price"))}
RAW_IDS = {name: i for i, name in enumerate((
    "unit_value_z", "account_unit_value_z", "norm_level", "peer_duty_rate", "claim_share", "origin_share",
    "effective_ports", "lines_per_day", "month_volume_ratio", "line_value_ratio", "port_unit_value_z",
    "port_spread_evidence", "dearer_price_evidence", "account_value_z"))}
THRESHOLDS = (
    "unit_value_low_z_from", "unit_value_low_z_to", "unit_value_low_size_from", "unit_value_low_size_to",
    "others_min_lines", "unit_value_outlier_from", "unit_value_outlier_to", "duty_gap_from", "duty_gap_to",
    "preference_share_from", "preference_share_to", "origin_share_from", "origin_share_to", "origin_min_lines",
    "switch_gap_days", "switch_overlap_days", "switch_min_lines", "port_spread_from", "port_spread_to",
    "new_importer_after_days", "new_importer_from", "new_importer_to", "disparity_gap_to", "surge_from", "surge_to",
    "surge_min_months", "surge_min_lines", "switch_evidence_from", "switch_evidence_to", "disparity_evidence_from",
    "disparity_evidence_to", "unit_value_low_sustained_from", "unit_value_low_sustained_to", "unit_value_low_shortfall",
    "unit_value_low_scatter_from", "unit_value_low_scatter_to", "unit_value_low_depth_from", "unit_value_low_depth_to",
    "new_importer_value_from", "new_importer_value_to", "port_unit_value_from", "port_unit_value_to",
    "port_spread_evidence_from", "port_spread_evidence_to", "classification_price_from", "classification_price_to",
)
# The tallies and norms a context binds (None where the model has no such table).
LOOKUPS = ("norm_index", "uv_moments", "ap_uv", "duty", "claims", "origin_lines", "ap_earliest", "ap_days",
           "cls_group_max", "cls_port_max", "cls_hts_count", "effective_ports", "acct", "acct_month", "typical_month",
           "cls_hts_lines", "cls_hts", "port_price", "origin_mix")

cdef double LN10 = 2.302585092994046
# Where a strength's linear rise bends towards 1 (see ramp).
cdef double BEND_AT = 0.9
# The share of a line's score that its value at stake may take away (see stake): small
# enough that it only orders lines of (nearly) equal evidence.
cdef double STAKE_SHARE = 0.01

cdef enum:
    UNIT_VALUE_LOW, UNIT_VALUE_OUTLIER, DUTY_BELOW_PEERS, PREFERENCE_RARE, ORIGIN_RARE, ORIGIN_SWITCH
    CLASSIFICATION_DISPARITY, PORT_SPREAD, NEW_IMPORTER, VOLUME_SURGE, PORT_UNIT_VALUE_LOW, CLASSIFICATION_PRICE
    N_INDICATORS

cdef enum:
    UNIT_VALUE_Z, ACCOUNT_UNIT_VALUE_Z, NORM_LEVEL, PEER_DUTY_RATE, CLAIM_SHARE, ORIGIN_SHARE, EFFECTIVE_PORTS
    LINES_PER_DAY, MONTH_VOLUME_RATIO, LINE_VALUE_RATIO, PORT_UNIT_VALUE_Z, PORT_SPREAD_EVIDENCE, DEARER_PRICE_EVIDENCE
    ACCOUNT_VALUE_Z
    N_RAW

cdef enum:
    UV_LOW_Z_FROM, UV_LOW_Z_TO, UV_LOW_SIZE_FROM, UV_LOW_SIZE_TO, OTHERS_MIN_LINES, UV_OUTLIER_FROM, UV_OUTLIER_TO
    DUTY_GAP_FROM, DUTY_GAP_TO, PREF_SHARE_FROM, PREF_SHARE_TO, ORIGIN_SHARE_FROM, ORIGIN_SHARE_TO, ORIGIN_MIN_LINES
    SWITCH_GAP_DAYS, SWITCH_OVERLAP_DAYS, SWITCH_MIN_LINES, PORT_SPREAD_FROM, PORT_SPREAD_TO
    NEW_AFTER_DAYS, NEW_FROM, NEW_TO, DISPARITY_GAP_TO, SURGE_FROM, SURGE_TO, SURGE_MIN_MONTHS, SURGE_MIN_LINES
    SWITCH_EVIDENCE_FROM, SWITCH_EVIDENCE_TO, DISPARITY_EVIDENCE_FROM, DISPARITY_EVIDENCE_TO
    UV_SUSTAINED_FROM, UV_SUSTAINED_TO, UV_SHORTFALL, UV_SCATTER_FROM, UV_SCATTER_TO, UV_DEPTH_FROM, UV_DEPTH_TO
    NEW_VALUE_FROM, NEW_VALUE_TO, PORT_UV_FROM, PORT_UV_TO, PORT_EVIDENCE_FROM, PORT_EVIDENCE_TO
    CLS_PRICE_FROM, CLS_PRICE_TO
    N_THRESHOLDS

cdef enum:
    L_NORM_INDEX, L_UV_MOMENTS, L_AP_UV, L_DUTY, L_CLAIMS, L_ORIGIN_LINES, L_AP_EARLIEST, L_AP_DAYS
    L_CLS_GROUP_MAX, L_CLS_PORT_MAX, L_CLS_HTS_COUNT, L_EFFECTIVE_PORTS, L_ACCT, L_ACCT_MONTH, L_TYPICAL_MONTH
    L_CLS_HTS_LINES, L_CLS_HTS, L_PORT_PRICE, L_ORIGIN_MIX
    N_LOOKUPS
    MAX_REASONS = 16
    AHEAD = 3               # lines between the prefetch of a line's slots and its scoring

assert len(INDICATOR_IDS) == N_INDICATORS and len(RAW_IDS) == N_RAW
assert len(THRESHOLDS) == N_THRESHOLDS and len(LOOKUPS) == N_LOOKUPS


ctypedef struct Line:
    uint64_t importer
    uint64_t maker
    int64_t day
    int64_t country
    int64_t port
    int64_t rate_bp
    int64_t hts10
    int64_t hts6
    int64_t hts4
    int64_t spi
    double log_uv
    int64_t basis
    int64_t value_cents


ctypedef struct Context:
    const TallyTable* t[N_LOOKUPS]
    const double* norm_median
    const double* norm_spread
    const int64_t* norm_lines
    int64_t n_norms
    const double* origin_price     # per origin * 2 + basis
    double origin_variance         # how far an origin's price for one HTS number strays from its index (log units^2)
    int64_t min_group_lines
    double bin_width
    double ports_norm
    double rate_norm
    double value_centre      # new_importer: big accounts' median mean log value per line ...
    double value_between     # ... the variance of those means between accounts ...
    double value_within      # ... and of an account's lines about its mean
    int64_t first_day
    double th[N_THRESHOLDS]
    bint on[N_INDICATORS]
    double weight[N_INDICATORS]


cdef inline double ramp(double x, double start, double end) noexcept nogil:
    """0 at ``start`` (and before), rising linearly to 0.9 at nine tenths of the way to
    ``end`` (either direction), then bending with the same slope towards 1 without
    reaching it: 0.95 at ``end``, ``1 - 0.01 / (r - 0.8)`` at ``r`` times the way.
    Evidence beyond ``end`` still ranks higher, so strong lines are not all tied at 1
    (the bend is where a clipped ramp would have cut them off). NaN gives 0."""
    cdef double r
    if isnan(x):
        return 0.0
    r = (x - start) / (end - start)
    if isnan(r) or r <= 0.0:
        return 0.0
    return r if r <= BEND_AT else 1.0 - (1.0 - BEND_AT) * (1.0 - BEND_AT) / (r - 2.0 * BEND_AT + 1.0)


cdef inline double stake(double score, int64_t value_cents) noexcept nogil:
    """The score of a line with ``value_cents`` at stake: ``score * (1 - STAKE_SHARE / (1
    + log(1 + value)))``, value in dollars. Of two lines with the same evidence the dearer
    ranks first (more duty at risk), which keeps lines an account- or group-wide indicator
    scores alike from tying; a line without evidence stays 0."""
    cdef double dollars = value_cents / 100.0 if value_cents > 0 else 0.0
    return score * (1.0 - STAKE_SHARE / (1.0 + log1p(dollars)))


cdef inline double chi2_evidence(double x, int64_t k) noexcept nogil:
    """-log10 of the chance that a chi-square of ``k`` degrees of freedom reaches ``x``
    (Wilson-Hilferty: the cube root of chi-square / k is nearly normal), at most 300."""
    cdef double v = 2.0 / (9.0 * k), w
    if not x > 0 or k < 1:
        return 0.0
    w = (cbrt(x / k) - (1.0 - v)) / sqrt(v)
    return -log10(fmax(0.5 * erfc(w / sqrt(2.0)), 1e-300))


cdef inline const int64_t* find(const TallyTable* t, uint64_t key) noexcept nogil:
    """The fields of ``key`` in ``t``, NULL if absent or if the model has no such table
    (the model refuses configs that score without the tables they read)."""
    return tally_find(t, key) if t != NULL else NULL


cdef inline int64_t get1(const TallyTable* t, uint64_t key, int64_t default) noexcept nogil:
    cdef const int64_t* found = find(t, key)
    return found[0] if found != NULL else default


cdef inline void level_code(const Line* L, int level, int64_t* hts, int64_t* origin) noexcept nogil:
    """(HTS code, origin) of the line's unit-value group at a level: HTS10 x origin,
    HTS10, HTS6, HTS4 (codes carry their digit count)."""
    if level == 0:
        hts[0], origin[0] = L.hts10, L.country
    elif level == 1:
        hts[0], origin[0] = L.hts10, ANY_ORIGIN
    elif level == 2:
        hts[0], origin[0] = L.hts6 * 16 + 6, ANY_ORIGIN
    else:
        hts[0], origin[0] = L.hts4 * 16 + 4, ANY_ORIGIN


cdef inline int64_t norm_lookup(const Context* c, const Line* L, int64_t own, int64_t max_level, double max_own_share,
                                double* median, double* spread, int64_t* group_lines=NULL,
                                int64_t min_level=0) noexcept nogil:
    """The finest level (from ``min_level`` up to ``max_level``) whose norm has at least
    ``min_group_lines`` lines besides the ``own`` lines of the line's account, and where
    those are at most ``max_own_share`` of the group: its level, median and spread (and
    its lines in ``group_lines``); -1 (NaN) if none."""
    cdef int64_t level, hts, origin, row, lines
    for level in range(min_level, max_level + 1):
        level_code(L, <int>level, &hts, &origin)
        row = get1(c.t[L_NORM_INDEX], uv_group(level, L.basis, hts, origin), -1)
        if row < 0 or row >= c.n_norms:
            continue
        lines = c.norm_lines[row]
        if lines - own >= c.min_group_lines and own <= max_own_share * lines:
            median[0], spread[0] = c.norm_median[row], c.norm_spread[row]
            if group_lines != NULL:
                group_lines[0] = lines
            return level
    median[0], spread[0] = NAN, NAN
    return -1


# ------------------------------------------------------------------ the indicators


ctypedef struct PriceNorm:
    double mean         # the account's mean log unit value for the line's product (the line's own if none)
    double variance     # the variance of its lines' log unit values about that mean
    int64_t count       # the account's lines of it
    int64_t level       # the norm's level (0: HTS10 x origin, 1: HTS10 across origins), -1 if none
    double centre       # the norm ...
    double spread       # ... its spread ...
    double others       # ... and the lines it rests on besides the account's
    double stray        # ... and its error beyond theirs (log units^2): across origins, how far an origin
                        # strays from its price index for one HTS number


cdef inline void account_price(const Context* c, const Line* L, int64_t line_level, double line_spread,
                               PriceNorm* n) noexcept nogil:
    """The account's mean for the line's product (from history) and the norm it is judged
    against: per level (the same HTS number and origin, else the HTS number across
    origins), the robust median while the account's own lines are at most a tenth of the
    group (more would pull the median towards its own price and hide a shallow
    shortfall), else the other accounts' mean and spread (at least the histogram's,
    ``line_spread`` at ``line_level``, where that level is as fine). HTS6 and HTS4 mix
    products too different in price to judge an account by."""
    cdef const int64_t* own = find(c.t[L_AP_UV], ap_key(L.importer, L.hts10, L.country, L.basis))
    cdef const int64_t* group
    cdef int64_t own_sum = 0, own_sq = 0, lv, hts, origin, lines = 0, others
    cdef double m, var
    n.count = 0
    if own != NULL:
        n.count, own_sum, own_sq = own[0], own[1], own[2]
    n.mean = own_sum / <double>(n.count if n.count > 1 else 1) / 1e6 if n.count > 0 else L.log_uv
    n.variance = fmax(own_sq / <double>n.count / 1e6 - n.mean * n.mean, 0.0) if n.count > 0 else 0.0
    n.level, n.centre, n.spread, n.others, n.stray = -1, NAN, NAN, NAN, 0.0
    for lv in range(2):
        if norm_lookup(c, L, n.count, lv, 0.1, &n.centre, &n.spread, &lines, lv) == lv:
            n.level, n.others = lv, <double>(lines - n.count)
            break
        level_code(L, <int>lv, &hts, &origin)
        group = find(c.t[L_UV_MOMENTS], uv_group(lv, L.basis, hts, origin))
        others = (group[0] if group != NULL else 0) - n.count
        if others >= c.th[OTHERS_MIN_LINES]:
            m = (group[1] - own_sum) / <double>(others if others > 1 else 1) / 1e6
            var = (group[2] - own_sq) / <double>(others if others > 1 else 1) / 1e6 - m * m
            n.centre = m
            n.spread = fmax(sqrt(fmax(var, c.bin_width * c.bin_width)), line_spread if line_level <= lv else NAN)
            n.level, n.others = lv, <double>others
            break
    # Across origins (level 1), the norm is moved by the origin's national price index
    # relative to the mean index of the HTS number's lines (their mix of origins).
    # That index is an average over HTS numbers: for one number the origin's price
    # strays from it by about ``origin_variance``, which the norm's error takes in.
    if n.level == 1 and c.origin_price != NULL:
        n.centre = n.centre + c.origin_price[L.country * 2 + L.basis] \
            - get1(c.t[L_ORIGIN_MIX], uv_group(1, L.basis, L.hts10, ANY_ORIGIN), 0) / 1e6
        n.stray = c.origin_variance


cdef inline void unit_value(const Context* c, const Line* L, double* s, double* raw, PriceNorm* n) noexcept nogil:
    """unit_value_outlier: the line's unit value against the robust norm of its product;
    unit_value_low: the account's mean for the product against the other accounts' (the
    account's price, ``n``, is kept for classification_price)."""
    cdef double median, spread, z, size, evidence, strength, scatter
    cdef int64_t level
    level = norm_lookup(c, L, 0, 3, 1.0, &median, &spread)  # no own lines: no share to bound
    z = (L.log_uv - median) / spread
    raw[UNIT_VALUE_Z], raw[NORM_LEVEL] = z, <double>level
    if c.on[UNIT_VALUE_OUTLIER]:
        s[UNIT_VALUE_OUTLIER] = ramp(fabs(z), c.th[UV_OUTLIER_FROM], c.th[UV_OUTLIER_TO])
    if not (c.on[UNIT_VALUE_LOW] or c.on[CLASSIFICATION_PRICE]):
        return
    account_price(c, L, level, spread, n)
    if not c.on[UNIT_VALUE_LOW]:
        return
    size = (n.mean - n.centre) / n.spread
    evidence = -size / sqrt(1.0 / (n.count if n.count > 1 else 1) + 1.0 / fmax(n.others, 1.0)
                            + n.stray / (n.spread * n.spread))
    raw[ACCOUNT_UNIT_VALUE_Z] = size
    strength = min(ramp(evidence, c.th[UV_LOW_Z_FROM], c.th[UV_LOW_Z_TO]),
                   ramp(-size, c.th[UV_LOW_SIZE_FROM], c.th[UV_LOW_SIZE_TO]))
    # A shallow price sustained over many lines: the evidence alone, with no size in
    # spreads asked, where the account declares at least a material shortfall. Across
    # origins the evidence is in the error of the origin's price index too, so a sole
    # importer of a product from its origin is judged as far as the index can tell.
    if n.level >= 0 and 1.0 - exp(n.mean - n.centre) >= c.th[UV_SHORTFALL]:
        strength = fmax(strength, ramp(evidence, c.th[UV_SUSTAINED_FROM], c.th[UV_SUSTAINED_TO]))
    # A few deep lines among an account's usual ones: an account-product whose lines
    # scatter around their own mean more widely than the product's spread makes likely
    # (chi-square of the account's variance in that spread, count - 1 degrees of
    # freedom), on its lines below their norm. Its shortfall is then its low lines':
    # the account-level tests above count on a line only as far as the line itself is
    # below the norm (in full from the depth ramp's start), not on its usual lines.
    if n.count > 2:
        scatter = chi2_evidence(n.count * n.variance / (spread * spread), n.count - 1)
        if scatter >= c.th[UV_SCATTER_FROM]:
            strength = strength * fmin(1.0, fmax(0.0, -z) / c.th[UV_DEPTH_FROM])
        if z < 0:
            strength = fmax(strength, fmin(ramp(-z, c.th[UV_DEPTH_FROM], c.th[UV_DEPTH_TO]),
                                           ramp(scatter, c.th[UV_SCATTER_FROM], c.th[UV_SCATTER_TO])))
    s[UNIT_VALUE_LOW] = strength


cdef inline void port_unit_value_low(const Context* c, const Line* L, double* s, double* raw) noexcept nogil:
    """A line away from its account's main port, where the account declares the same
    goods lower than at its main port (the pooled z, in standard errors, and log gap of
    ``port_price``, see ``port_prices`` in ``indicators/unit_value.py``), by a material
    shortfall."""
    cdef const int64_t* away = find(c.t[L_PORT_PRICE], acct_port_key(L.importer, L.port))
    cdef double z
    if away == NULL:
        return
    z = away[0] / 1e6
    raw[PORT_UNIT_VALUE_Z] = z
    if 1.0 - exp(away[1] / 1e6) >= c.th[UV_SHORTFALL]:
        s[PORT_UNIT_VALUE_LOW] = ramp(-z, c.th[PORT_UV_FROM], c.th[PORT_UV_TO])


cdef inline void duty_below_peers(const Context* c, const Line* L, double* s, double* raw) noexcept nogil:
    """Duty against peers of the same HTS number and origin without a preference claim."""
    cdef const int64_t* peers = find(c.t[L_DUTY], duty_key(False, L.hts10, L.country))
    cdef double peer_rate = NAN, gap = NAN
    if peers != NULL and peers[0] > 0:
        peer_rate = peers[1] / <double>peers[0]
    if L.spi == 0 and peer_rate > 0:
        gap = 1 - (L.rate_bp / 1e4) / peer_rate
    raw[PEER_DUTY_RATE] = peer_rate
    s[DUTY_BELOW_PEERS] = ramp(gap, c.th[DUTY_GAP_FROM], c.th[DUTY_GAP_TO])


cdef inline void preference_rare(const Context* c, const Line* L, double* s, double* raw) noexcept nogil:
    """A preference claimed where the origin's lines rarely claim it."""
    cdef int64_t origin_lines
    cdef double share = NAN
    if L.spi > 0:
        origin_lines = get1(c.t[L_CLAIMS], claim_key(L.country, 0), 0)
        share = get1(c.t[L_CLAIMS], claim_key(L.country, L.spi), 0) / <double>(origin_lines if origin_lines > 1 else 1)
    raw[CLAIM_SHARE] = share
    s[PREFERENCE_RARE] = ramp(share, c.th[PREF_SHARE_FROM], c.th[PREF_SHARE_TO])


cdef inline void origin_rare(const Context* c, const Line* L, double* s, double* raw) noexcept nogil:
    """An origin rare for the product (HTS6) nationally."""
    cdef int64_t hts6_lines = get1(c.t[L_ORIGIN_LINES], origin_key(L.hts6, ANY_ORIGIN), 0)
    cdef double share = NAN
    if hts6_lines >= c.th[ORIGIN_MIN_LINES]:
        share = get1(c.t[L_ORIGIN_LINES], origin_key(L.hts6, L.country), 0) / <double>(hts6_lines if hts6_lines > 1
                                                                                        else 1)
    raw[ORIGIN_SHARE] = share
    s[ORIGIN_RARE] = ramp(share, c.th[ORIGIN_SHARE_FROM], c.th[ORIGIN_SHARE_TO])


cdef inline void origin_switch(const Context* c, const Line* L, double* s) noexcept nogil:
    """A new origin for an established account-product: the old origin stopped (a clean
    switch), or went on while the new one took a share too late to be chance (below),
    where the line pays less duty than the old origin's goods."""
    cdef int64_t earliest = get1(c.t[L_AP_EARLIEST], earliest_key(L.importer, L.hts10), -1)
    cdef int64_t product_first = floor_div(earliest, 1024)
    cdef int64_t first_origin = earliest - product_first * 1024
    cdef const int64_t* mine = find(c.t[L_AP_DAYS], ap_day_key(L.importer, L.hts10, L.country))
    cdef const int64_t* old = find(c.t[L_AP_DAYS], ap_day_key(L.importer, L.hts10, first_origin))
    cdef int64_t origin_first = mine[0] if mine != NULL else -1
    cdef int64_t mine_lines = mine[2] if mine != NULL else -1
    cdef int64_t old_last = old[1] if old != NULL else -1
    cdef int64_t old_lines = old[2] if old != NULL else -1
    cdef int64_t last = old_last if mine == NULL or old_last > mine[1] else mine[1]
    cdef const int64_t* peers
    cdef double late, strength
    if (earliest < 0 or origin_first < 0 or L.country == first_origin or old_lines < c.th[SWITCH_MIN_LINES]
            or mine_lines < c.th[SWITCH_MIN_LINES]):
        return
    strength = ramp(<double>(origin_first - product_first), c.th[SWITCH_GAP_DAYS], 3 * c.th[SWITCH_GAP_DAYS])
    if old_last > origin_first + c.th[SWITCH_OVERLAP_DAYS]:
        # The old origin goes on: were this origin's lines spread evenly over the days
        # the account filed the product, none would fall before its first day with
        # chance (1 - f) ^ lines, f the share of those days gone by; -log10 of it.
        late = -mine_lines * log10(1.0 - (origin_first - product_first) / <double>(last - product_first + 1))
        strength = min(strength, ramp(late, c.th[SWITCH_EVIDENCE_FROM], c.th[SWITCH_EVIDENCE_TO]))
    # A switch is transshipment's shape only where it saves duty: the line pays a lower
    # effective rate than the old origin's goods do (its peers without a claim). A new
    # supplier whose goods pay as much is diversification, or growth.
    peers = find(c.t[L_DUTY], duty_key(False, L.hts10, first_origin))
    if peers != NULL and peers[0] > 0 and L.rate_bp / 1e4 >= peers[1] / <double>peers[0]:
        strength = 0.0
    s[ORIGIN_SWITCH] = strength


cdef inline void classification_disparity(const Context* c, const Line* L, const int64_t* heading,
                                          double* s) noexcept nogil:
    """The same importer + manufacturer + heading under a dearer HTS number at other ports:
    no line at this port has the dearer number, or the line's cheaper number is declared
    at this port only, on a share of the heading's lines there too large for none of its
    lines at the other ports to have it by chance. ``heading``: the line's importer x
    manufacturer x heading in ``cls_group_max`` (its dearest (rate, number), lines), or NULL."""
    cdef uint64_t group = cls_group_key(L.maker, L.hts4)
    cdef const int64_t* heading_port = find(c.t[L_CLS_PORT_MAX], cls_port_key(L.maker, L.hts4, L.port))
    cdef const int64_t* number = find(c.t[L_CLS_HTS], cls_hts_key(L.maker, L.hts10))  # group key, lines
    cdef int64_t group_max = dearest_rate(heading[0]) if heading != NULL else -1
    cdef int64_t port_max = heading_port[0] if heading_port != NULL else -1
    cdef int64_t numbers = get1(c.t[L_CLS_HTS_COUNT], group, 0)
    cdef int64_t here, everywhere, heading_here, heading_elsewhere
    cdef double gap = 0.0, late, strength
    if L.rate_bp > port_max:  # this line counts too
        port_max = L.rate_bp
    if L.maker == 0 or numbers < 2 or L.rate_bp >= group_max or group_max <= 0:
        return
    gap = (group_max - port_max) / <double>(group_max if group_max > 1 else 1)
    strength = ramp(gap, 0.0, c.th[DISPARITY_GAP_TO])
    here = get1(c.t[L_CLS_HTS_LINES], cls_hts_port_key(L.maker, L.hts10, L.port), 0)
    everywhere = number[1] if number != NULL else 0
    heading_here = heading_port[1] if heading_port != NULL else 0
    heading_elsewhere = (heading[1] if heading != NULL else 0) - heading_here
    if here > 0 and here == everywhere and here < heading_here and heading_elsewhere > 0:
        # Were the number a share here/heading_here of the heading's lines at every
        # port, none of the lines elsewhere would have it with chance (1 - share) ^
        # lines elsewhere; -log10 of it. The size: the line's own gap to the dearest.
        late = -heading_elsewhere * log10(1.0 - here / <double>heading_here)
        gap = (group_max - L.rate_bp) / <double>(group_max if group_max > 1 else 1)
        strength = max(strength, min(ramp(gap, 0.0, c.th[DISPARITY_GAP_TO]),
                                     ramp(late, c.th[DISPARITY_EVIDENCE_FROM], c.th[DISPARITY_EVIDENCE_TO])))
    s[CLASSIFICATION_DISPARITY] = strength


cdef inline void classification_price(const Context* c, const Line* L, const PriceNorm* n, const int64_t* dearest,
                                      double* s, double* raw) noexcept nogil:
    """The account's goods under the line's HTS number are priced like those it declares
    under the dearest number the same importer + manufacturer declares in the heading,
    not like the line's number's norm: misclassified goods keep their own price. The
    evidence is log10 of the likelihood ratio of the account's mean price under "priced
    as its dearest number" against "priced as its own number's norm" (each a normal in
    the product's spread, with the standard error of the account's lines and of what it
    is compared with), where the dearest number pays more duty than the line does.
    ``dearest``: the line's importer x manufacturer x heading in ``cls_group_max``, or NULL."""
    cdef const int64_t* theirs
    cdef int64_t number, lines
    cdef double variance, own, dearer, evidence
    if dearest == NULL or L.maker == 0 or n.level < 0 or n.count < 1:
        return
    number = dearest_hts(dearest[0])
    if number == L.hts10 or dearest_rate(dearest[0]) <= L.rate_bp:
        return
    theirs = find(c.t[L_AP_UV], ap_key(L.importer, number, L.country, L.basis))
    if theirs == NULL or theirs[0] < 1:
        return
    lines = theirs[0]
    variance = n.spread * n.spread
    own = (n.mean - n.centre) ** 2 / (variance * (1.0 / n.count + 1.0 / fmax(n.others, 1.0)))
    dearer = (n.mean - theirs[1] / <double>lines / 1e6) ** 2 / (variance * (1.0 / n.count + 1.0 / lines))
    evidence = (own - dearer) / (2.0 * LN10)
    raw[DEARER_PRICE_EVIDENCE] = evidence
    s[CLASSIFICATION_PRICE] = ramp(evidence, c.th[CLS_PRICE_FROM], c.th[CLS_PRICE_TO])


cdef inline bint account_level(const Context* c, uint64_t importer, double* s, double* raw) noexcept nogil:
    """port_spread: more ports than the industry's usual concentration allows an account
    of its lines (the evidence, see ``port_spread_evidence`` in ``indicators/account.py``),
    or effective ports far above the industry's; new_importer: an account new in the
    data filing far more lines per active day than the industry, or lines of far
    greater value than the industry's accounts (its mean log value per line against
    their median, in the standard error of an account of its lines: one test per
    account, however few its lines); whether the account is new is returned: its lines
    are judged further by :func:`new_importer`."""
    cdef const int64_t* account
    cdef const int64_t* spread
    cdef int64_t first, days, valued
    cdef double ports, evidence, per_day, value_z = NAN
    if c.on[PORT_SPREAD]:
        spread = find(c.t[L_EFFECTIVE_PORTS], importer)
        ports = spread[0] / 1000.0 if spread != NULL else 0.0
        evidence = spread[1] / 1000.0 if spread != NULL else 0.0
        raw[EFFECTIVE_PORTS], raw[PORT_SPREAD_EVIDENCE] = ports, evidence
        s[PORT_SPREAD] = fmax(ramp(ports / c.ports_norm, c.th[PORT_SPREAD_FROM], c.th[PORT_SPREAD_TO]),
                              ramp(evidence, c.th[PORT_EVIDENCE_FROM], c.th[PORT_EVIDENCE_TO]))
    if c.on[NEW_IMPORTER]:
        account = find(c.t[L_ACCT], importer)
        first = account[0] if account != NULL else -1
        days = (account[1] if account != NULL else -1) - first + 1
        per_day = (account[2] if account != NULL and account[2] > 0 else 0) / <double>(days if days > 1 else 1)
        valued = account[3] if account != NULL else 0
        if valued > 0:
            value_z = (account[4] / <double>valued / 1e6 - c.value_centre) \
                / sqrt(c.value_between + c.value_within / valued)
        raw[LINES_PER_DAY], raw[ACCOUNT_VALUE_Z] = per_day, value_z
        if first >= 0 and first >= c.first_day + c.th[NEW_AFTER_DAYS]:
            s[NEW_IMPORTER] = fmax(ramp(per_day / c.rate_norm, c.th[NEW_FROM], c.th[NEW_TO]),
                                   ramp(value_z, c.th[NEW_VALUE_FROM], c.th[NEW_VALUE_TO]))
            return True
    return False


cdef inline void new_importer(const Context* c, const Line* L, double* s, double* raw) noexcept nogil:
    """A new account's line, by its value against its product's mean line (HTS10 x
    origin: declared value over the lines with a unit value). The account's evidence
    counts on each line in proportion ``v / (1 + v)`` of the line's value ratio ``v``
    (half on a usual line), so that its ordinary lines neither tie nor fill the top. One
    line of great value is no evidence of its own: line values spread widely, and an
    account's are judged together (:func:`account_level`)."""
    cdef const int64_t* unclaimed = find(c.t[L_DUTY], duty_key(False, L.hts10, L.country))
    cdef const int64_t* claimed = find(c.t[L_DUTY], duty_key(True, L.hts10, L.country))
    cdef int64_t lines = (get1(c.t[L_UV_MOMENTS], uv_group(0, 0, L.hts10, L.country), 0)
                          + get1(c.t[L_UV_MOMENTS], uv_group(0, 1, L.hts10, L.country), 0))
    cdef double value = ((unclaimed[0] if unclaimed != NULL else 0) + (claimed[0] if claimed != NULL else 0)) / 100.0
    cdef double v
    if lines < c.th[OTHERS_MIN_LINES] or value <= 0 or L.value_cents < 0:
        s[NEW_IMPORTER] = 0.0
        return
    v = L.value_cents / 100.0 / (value / lines)
    raw[LINE_VALUE_RATIO] = v
    s[NEW_IMPORTER] = s[NEW_IMPORTER] * v / (1.0 + v)


cdef inline void volume_surge(const Context* c, const Line* L, double* s, double* raw) noexcept nogil:
    """An account's month far above its usual month."""
    cdef int64_t month_lines = get1(c.t[L_ACCT_MONTH], month_key(L.importer, L.day), 0)
    cdef const int64_t* typical = find(c.t[L_TYPICAL_MONTH], L.importer)
    cdef double median = (typical[0] if typical != NULL else 0) / 1000.0
    cdef int64_t months = typical[1] if typical != NULL else 0
    cdef double surge = month_lines / (median if median > 1e-9 else 1e-9)
    raw[MONTH_VOLUME_RATIO] = surge
    if months >= c.th[SURGE_MIN_MONTHS] and month_lines >= c.th[SURGE_MIN_LINES]:
        s[VOLUME_SURGE] = ramp(surge, c.th[SURGE_FROM], c.th[SURGE_TO])


cdef inline void ahead(const TallyTable* t, uint64_t key) noexcept nogil:
    if t != NULL:
        tally_prefetch(t, key)


cdef inline void prefetch_line(const Context* c, const Line* L) noexcept nogil:
    """Prefetches the slots a line's first lookups will probe (those that do not depend
    on another lookup), so that the lookups of several lines overlap."""
    if c.on[UNIT_VALUE_LOW] or c.on[UNIT_VALUE_OUTLIER] or c.on[CLASSIFICATION_PRICE]:
        ahead(c.t[L_NORM_INDEX], uv_group(0, L.basis, L.hts10, L.country))
    if c.on[UNIT_VALUE_LOW] or c.on[CLASSIFICATION_PRICE]:
        ahead(c.t[L_AP_UV], ap_key(L.importer, L.hts10, L.country, L.basis))
        ahead(c.t[L_UV_MOMENTS], uv_group(0, L.basis, L.hts10, L.country))
    if c.on[DUTY_BELOW_PEERS]:
        ahead(c.t[L_DUTY], duty_key(False, L.hts10, L.country))
    if c.on[ORIGIN_RARE]:
        ahead(c.t[L_ORIGIN_LINES], origin_key(L.hts6, ANY_ORIGIN))
    if c.on[ORIGIN_SWITCH]:
        ahead(c.t[L_AP_EARLIEST], earliest_key(L.importer, L.hts10))
        ahead(c.t[L_AP_DAYS], ap_day_key(L.importer, L.hts10, L.country))
    if (c.on[CLASSIFICATION_DISPARITY] or c.on[CLASSIFICATION_PRICE]) and L.maker != 0:
        ahead(c.t[L_CLS_GROUP_MAX], cls_group_key(L.maker, L.hts4))
    if c.on[CLASSIFICATION_DISPARITY] and L.maker != 0:
        ahead(c.t[L_CLS_PORT_MAX], cls_port_key(L.maker, L.hts4, L.port))
        ahead(c.t[L_CLS_HTS_COUNT], cls_group_key(L.maker, L.hts4))
        ahead(c.t[L_CLS_HTS_LINES], cls_hts_port_key(L.maker, L.hts10, L.port))
        ahead(c.t[L_CLS_HTS], cls_hts_key(L.maker, L.hts10))
    if c.on[PORT_SPREAD]:
        ahead(c.t[L_EFFECTIVE_PORTS], L.importer)
    if c.on[PORT_UNIT_VALUE_LOW]:
        ahead(c.t[L_PORT_PRICE], acct_port_key(L.importer, L.port))
    if c.on[NEW_IMPORTER]:
        ahead(c.t[L_ACCT], L.importer)
    if c.on[VOLUME_SURGE]:
        ahead(c.t[L_ACCT_MONTH], month_key(L.importer, L.day))
        ahead(c.t[L_TYPICAL_MONTH], L.importer)


cdef inline void load_line(Line* L, int64_t i, const uint64_t* importer, const uint64_t* maker, const int64_t* day,
                           const int64_t* country, const int64_t* port, const int64_t* rate_bp, const int64_t* hts10,
                           const int64_t* hts6, const int64_t* hts4, const int64_t* spi, const double* log_uv,
                           const int64_t* basis, const int64_t* value_cents) noexcept nogil:
    L.importer, L.maker, L.day, L.country, L.port = importer[i], maker[i], day[i], country[i], port[i]
    L.rate_bp, L.hts10, L.hts6, L.hts4, L.spi = rate_bp[i], hts10[i], hts6[i], hts4[i], spi[i]
    L.log_uv, L.basis, L.value_cents = log_uv[i], basis[i], value_cents[i]


cdef inline void score_line(const Context* c, const Line* L, double* s, double* raw) noexcept nogil:
    """Every enabled indicator's strength (``s``, by indicator id) and raw values (by raw id)."""
    cdef int j
    cdef PriceNorm price
    cdef const int64_t* heading = NULL
    for j in range(N_INDICATORS):
        s[j] = 0.0
    for j in range(N_RAW):
        raw[j] = NAN
    price.level = -1
    if c.on[UNIT_VALUE_LOW] or c.on[UNIT_VALUE_OUTLIER] or c.on[CLASSIFICATION_PRICE]:
        unit_value(c, L, s, raw, &price)
    if c.on[PORT_UNIT_VALUE_LOW]:
        port_unit_value_low(c, L, s, raw)
    if c.on[DUTY_BELOW_PEERS]:
        duty_below_peers(c, L, s, raw)
    if c.on[PREFERENCE_RARE]:
        preference_rare(c, L, s, raw)
    if c.on[ORIGIN_RARE]:
        origin_rare(c, L, s, raw)
    if c.on[ORIGIN_SWITCH]:
        origin_switch(c, L, s)
    if (c.on[CLASSIFICATION_DISPARITY] or c.on[CLASSIFICATION_PRICE]) and L.maker != 0:  # one lookup for both
        heading = find(c.t[L_CLS_GROUP_MAX], cls_group_key(L.maker, L.hts4))
    if c.on[CLASSIFICATION_DISPARITY]:
        classification_disparity(c, L, heading, s)
    if c.on[CLASSIFICATION_PRICE]:
        classification_price(c, L, &price, heading, s, raw)
    if account_level(c, L.importer, s, raw) and c.on[NEW_IMPORTER]:
        new_importer(c, L, s, raw)
    if c.on[VOLUME_SURGE]:
        volume_surge(c, L, s, raw)


# ------------------------------------------------------------------ binding and the pass


cdef class ScoringContext:
    """A model's lookups, thresholds and weights, bound for the kernel (read-only)."""

    cdef Context c
    cdef list _keep          # the tallies and arrays the context points into

    def __cinit__(self, dict lookups, dict thresholds, dict weights, int64_t min_group_lines, double bin_width,
                  int64_t first_day):
        """``lookups`` (see :data:`LOOKUPS`): tallies, the norms' arrays (``norm_median``,
        ``norm_spread``, ``norm_lines``), ``origin_price`` and the numbers ``ports_norm``
        and ``rate_norm``; what a model lacks is missing (the indicators reading it must
        be off)."""
        cdef int j
        self._keep = []
        for j, name in enumerate(LOOKUPS):
            tally = lookups.get(name)
            if tally is not None and not isinstance(tally, Tally):
                raise TypeError(f"lookup {name!r} must be a Tally")
            self.c.t[j] = &(<Tally>tally).t if tally is not None else NULL
            self._keep.append(tally)
        cdef const double[::1] median = self._array(lookups.get("norm_median", ()), np.float64)
        cdef const double[::1] spread = self._array(lookups.get("norm_spread", ()), np.float64)
        cdef const int64_t[::1] lines = self._array(lookups.get("norm_lines", ()), np.int64)
        cdef const double[::1] price = self._array(lookups.get("origin_price", ()), np.float64)
        if not (median.shape[0] == spread.shape[0] == lines.shape[0]):
            raise ValueError("the norm arrays must have one length")
        if price.shape[0] and price.shape[0] != 2048:
            raise ValueError("origin prices are one per origin and basis (2048)")
        self.c.norm_median = &median[0] if median.shape[0] else NULL
        self.c.norm_spread = &spread[0] if spread.shape[0] else NULL
        self.c.norm_lines = &lines[0] if lines.shape[0] else NULL
        self.c.n_norms = lines.shape[0]
        self.c.origin_price = &price[0] if price.shape[0] else NULL
        for j, name in enumerate(THRESHOLDS):
            self.c.th[j] = float(thresholds[name])
        for name, j in INDICATOR_IDS.items():
            self.c.weight[j] = float(weights.get(name, 0.0))
            self.c.on[j] = self.c.weight[j] > 0
        self.c.min_group_lines = min_group_lines
        self.c.bin_width = bin_width
        self.c.ports_norm = float(lookups.get("ports_norm", 1.0))
        self.c.rate_norm = float(lookups.get("rate_norm", 1.0))
        self.c.value_centre = float(lookups.get("value_centre", 0.0))
        self.c.value_between = float(lookups.get("value_between", 1.0))
        self.c.value_within = float(lookups.get("value_within", 0.0))
        self.c.origin_variance = float(lookups.get("origin_price_variance", 0.0))
        self.c.first_day = first_day

    def _array(self, values, dtype):
        array = np.ascontiguousarray(values, dtype)
        self._keep.append(array)
        return array


def score_lines(ScoringContext context, const uint64_t[::1] importer, const uint64_t[::1] maker,
                const int64_t[::1] day, const int64_t[::1] country, const int64_t[::1] port,
                const int64_t[::1] rate_bp, const int64_t[::1] hts10, const int64_t[::1] hts6,
                const int64_t[::1] hts4, const int64_t[::1] spi, const double[::1] log_uv, const int64_t[::1] basis,
                const int64_t[::1] value_cents, int64_t reasons=-1):
    """Strengths ``(n, indicators)`` and raw values ``(n, raw values)`` of the lines (one
    array per parsed field), columns by kernel id (:data:`INDICATOR_IDS`, :data:`RAW_IDS`).

    With ``reasons >= 0`` also ``(score, top, fired)``: the combined score (its line's
    value at stake ordering lines of equal evidence, see :func:`stake`), the indicator ids of the ``reasons`` largest weighted strengths and how many fired.
    """
    cdef int64_t n = importer.shape[0], i, j
    lengths = (maker.shape[0], day.shape[0], country.shape[0], port.shape[0], rate_bp.shape[0], hts10.shape[0],
               hts6.shape[0], hts4.shape[0], spi.shape[0], log_uv.shape[0], basis.shape[0], value_cents.shape[0])
    if any(length != n for length in lengths):
        raise ValueError("score_lines takes fields of one length")
    cdef int64_t k = min(reasons, N_INDICATORS, MAX_REASONS)
    strengths_arr = np.zeros((n, N_INDICATORS), np.float64)
    raw_arr = np.full((n, N_RAW), np.nan)
    score_arr = np.zeros(n, np.float64)
    top_arr = np.zeros((n, max(k, 0)), np.int64)
    fired_arr = np.zeros(n, np.int64)
    cdef double[:, ::1] out_s = strengths_arr
    cdef double[:, ::1] out_raw = raw_arr
    cdef double[::1] out_score = score_arr
    cdef int64_t[:, ::1] out_top = top_arr
    cdef int64_t[::1] out_fired = fired_arr
    cdef const Context* c = &context.c
    cdef Line L, A
    cdef double contribution[N_INDICATORS]
    cdef int64_t top[MAX_REASONS]
    with nogil:
        for i in range(min(n, AHEAD)):
            load_line(&A, i, &importer[0], &maker[0], &day[0], &country[0], &port[0], &rate_bp[0], &hts10[0],
                      &hts6[0], &hts4[0], &spi[0], &log_uv[0], &basis[0], &value_cents[0])
            prefetch_line(c, &A)
        for i in range(n):
            if i + AHEAD < n:
                load_line(&A, i + AHEAD, &importer[0], &maker[0], &day[0], &country[0], &port[0], &rate_bp[0],
                          &hts10[0], &hts6[0], &hts4[0], &spi[0], &log_uv[0], &basis[0], &value_cents[0])
                prefetch_line(c, &A)
            load_line(&L, i, &importer[0], &maker[0], &day[0], &country[0], &port[0], &rate_bp[0], &hts10[0],
                      &hts6[0], &hts4[0], &spi[0], &log_uv[0], &basis[0], &value_cents[0])
            score_line(c, &L, &out_s[i, 0], &out_raw[i, 0])
            if k >= 0:
                for j in range(N_INDICATORS):
                    contribution[j] = out_s[i, j] * c.weight[j]
                out_score[i] = stake(combine_row(contribution, N_INDICATORS, k, top, &out_fired[i]), value_cents[i])
                for j in range(k):
                    out_top[i, j] = top[j]
    if reasons < 0:
        return strengths_arr, raw_arr
    return strengths_arr, raw_arr, score_arr, top_arr, fired_arr


def score_accounts(ScoringContext context, const uint64_t[::1] importers):
    """Strengths ``(n, indicators)`` and raw values ``(n, raw values)`` of the
    account-level indicators, per importer hash (by kernel id; other columns 0 / NaN)."""
    cdef int64_t n = importers.shape[0], i
    strengths_arr = np.zeros((n, N_INDICATORS), np.float64)
    raw_arr = np.full((n, N_RAW), np.nan)
    cdef double[:, ::1] s = strengths_arr
    cdef double[:, ::1] raw = raw_arr
    with nogil:
        for i in range(n):
            account_level(&context.c, importers[i], &s[i, 0], &raw[i, 0])
    return strengths_arr, raw_arr
