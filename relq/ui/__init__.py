"""The UI boundary: the only part of relq that imports streamlit.

Pages import ``from relq import ui`` and call what is re-exported here:
session (engine, data version, store errors), access (sign-in, roles, personal data, audit),
frame (RelQ's menu, pages served through the frame), sidebar (the shared filters), queries (cached), widgets (cards, tables, downloads),
cases (open cases from any customer list, the case editor, the test digest).
"""

from relq.core.plaintext import plain  # noqa: F401
from relq.ui.access import (  # noqa: F401
    LOCAL_USER,
    SMALL_VIEW_SENTENCE,
    _refusal_page,
    _roles,
    _roles_file_version,
    allowed_dimensions,
    audit,
    audit_records,
    auth_configured,
    can,
    current_role,
    current_user_email,
    customer_list_hidden_notice,
    deployment_gate,
    executive_kpis,
    executive_moves,
    executive_survival,
    executive_trend,
    is_executive,
    mask_personal,
    minimum_customers,
    name_masker,
    navigation_for_role,
    owner_splits_allowed,
    personal_columns_visible,
    require_action,
    role_map,
    set_owner_splits,
    sign_in_gate,
    small_group_gate,
    small_view_gate,
    suppress_small_groups,
    view_size,
)
from relq.ui.cases import (  # noqa: F401
    bump_cases_version,
    case_editor,
    case_saved_notice,
    cases_need_a_row_store,
    cases_version,
    my_names,
    open_cases_for,
    send_test_digest,
)
from relq.ui.frame import (  # noqa: F401
    framed,
    sidebar_navigation,
)
from relq.ui.queries import (  # noqa: F401
    _headline,
    _query,
    _trend,
    cached_driver_moments,
    cached_drivers,
    cached_headline,
    cached_overview_kpis,
    cached_query,
    cached_segment_moves,
    cached_trend,
    read_side_by_side,
)
from relq.ui.session import (  # noqa: F401
    CACHE_TTL,
    _engine,
    _has_demo,
    bump_data_version,
    data_version,
    demo_notice,
    fail_clearly,
    get_engine,
    min_n,
    read_data_version,
    store_errors_as_sentences,
)
from relq.ui.sidebar import (  # noqa: F401
    FILTER_DIMENSIONS,
    FLAG_LABELS,
    _bounds,
    _clear_filters,
    _init_widgets_from_url,
    _options,
    _quadrant_choice,
    current_filter,
    filter_sidebar,
)
from relq.ui.timing import timed_run  # noqa: F401
from relq.ui.widgets import (  # noqa: F401
    audited_download,
    download_csv,
    format_interval,
    nothing_matches,
    responses_sentence,
    score_card,
    table_with_download,
)
