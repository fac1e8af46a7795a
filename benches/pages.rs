//! What rendering a page or a mail costs: each page (and each mail, both parts) from its
//! templates, in English and German, with the embedded templates.
//!
//! `cargo bench --bench pages`. The budget: a page is rendered once per request, next to a
//! sign-in's argon2 verification (~20 ms on the default cost, `request_path`'s `argon2`
//! row), so a page must cost a small fraction of a millisecond. Measured 2026-12-04 on the
//! 2-vCPU machine: 4-7 µs a page (sign-in 6.6 µs, en and de alike), 15 µs "Your devices"
//! with two sessions, 6.5 µs a mail (both parts), 0.6 ms to load and check them all.

use authflow_auth::config::PagesConfig;
use authflow_auth::endpoint::Page;
use authflow_auth::pages::{fixture_sessions, MailTemplate, Pages};
use criterion::{black_box, criterion_group, criterion_main, Criterion};

fn pages(c: &mut Criterion) {
    let pages = Pages::new(&PagesConfig::default(), "https://app.example.com").expect("pages");
    let mut group = c.benchmark_group("pages");
    for lang in ["en", "de"] {
        for page in [
            Page::SignIn,
            Page::SignUp,
            Page::ResetPassword,
            Page::Verified,
        ] {
            let query = Some("error=invalid_credentials&next=/app/x&token=abc");
            group.bench_function(format!("{page:?}/{lang}"), |b| {
                b.iter(|| black_box(pages.render_page(page, lang, black_box(query))))
            });
        }
        let sessions = fixture_sessions();
        group.bench_function(format!("Devices/{lang}"), |b| {
            b.iter(|| black_box(pages.render_devices(&sessions, &[], 7_200_000, lang, None)))
        });
        group.bench_function(format!("mail Verification/{lang}"), |b| {
            b.iter(|| {
                black_box(pages.mail(
                    MailTemplate::Verification,
                    lang,
                    "ann@example.com",
                    "https://app.example.com/api/v1/simple_auth/verify-email?token=abc",
                    0,
                ))
            })
        });
    }
    group.finish();
    // What a start or a reload spends loading and checking every template in every language.
    c.bench_function("pages/load and check all", |b| {
        b.iter(|| {
            black_box(Pages::new(
                &PagesConfig::default(),
                "https://app.example.com",
            ))
        })
    });
}

criterion_group!(benches, pages);
criterion_main!(benches);
