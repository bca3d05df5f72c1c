// Means with 95% intervals over seeds (results.h), and freeing a run's results.
#include "experiments/results.h"

#include <math.h>
#include <stdlib.h>

// Regularized incomplete beta I_x(a, b) by its continued fraction (modified Lentz),
// which converges fast for x < (a + 1) / (a + b + 2); the other side by symmetry.
static double beta_cf(double a, double b, double x) {
    const double tiny = 1e-300;
    double c = 1, d = 1 - (a + b) * x / (a + 1);
    d = 1 / (fabs(d) < tiny ? tiny : d);
    double h = d;
    for (int m = 1; m <= 300; m++) {
        double m2 = 2.0 * m;
        double num = m * (b - m) * x / ((a + m2 - 1) * (a + m2));
        for (int half = 0; half < 2; half++) {
            d = 1 + num * d;
            d = 1 / (fabs(d) < tiny ? tiny : d);
            c = 1 + num / c;
            if (fabs(c) < tiny) c = tiny;
            h *= d * c;
            num = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1));
        }
        if (fabs(d * c - 1) < 1e-15) break;
    }
    return h;
}

static double beta_reg(double a, double b, double x) {
    if (x <= 0) return 0;
    if (x >= 1) return 1;
    double lf = lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x) + b * log1p(-x);
    if (x < (a + 1) / (a + b + 2)) return exp(lf) * beta_cf(a, b, x) / a;
    return 1 - exp(lf) * beta_cf(b, a, 1 - x) / b;
}

// P(T <= t) for Student's t with dof degrees of freedom, t >= 0
static double t_cdf(double t, double dof) {
    return 1 - 0.5 * beta_reg(dof / 2, 0.5, dof / (dof + t * t));
}

// the t with P(T <= t) = p (p > 0.5), by bisection: the cdf is monotone, and 200
// halvings of [0, 1e4] reach double precision (dof 1 at 0.975 needs 12.7)
static double t_quantile(double p, int dof) {
    double lo = 0, hi = 1e4;
    for (int i = 0; i < 200 && hi - lo > 1e-13 * hi; i++) {
        double mid = 0.5 * (lo + hi);
        if (t_cdf(mid, dof) < p) lo = mid; else hi = mid;
    }
    return 0.5 * (lo + hi);
}

metric_ci metric_ci_from(const double *samples, int n) {
    metric_ci m = {0, 0, 0, n > 0 ? n : 0};
    if (n <= 0) return m;
    double s = 0, ss = 0;
    for (int i = 0; i < n; i++) s += samples[i];
    m.mean = s / n;
    m.lo = m.hi = m.mean;
    if (n == 1) return m;
    for (int i = 0; i < n; i++) ss += (samples[i] - m.mean) * (samples[i] - m.mean);
    double half = t_quantile(0.975, n - 1) * sqrt(ss / (n - 1) / n);
    m.lo = m.mean - half, m.hi = m.mean + half;
    return m;
}

void run_results_free(run_results *r) {
    for (int i = 0; i < r->n_curves; i++) {
        free(r->curves[i].step), free(r->curves[i].loss);
        r->curves[i].step = r->curves[i].loss = NULL;
        r->curves[i].n = 0;
    }
    r->n_curves = 0;
}
