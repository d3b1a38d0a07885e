/* real.h: the scalar type of the model and the CPU backend: float, or double when built with
 * -DPG_REAL_DOUBLE.
 *
 * The model and the reference backend are written once over pg_real. libpg builds them in float
 * (the production precision; matrix products through cblas_sgemm); the gradient-check test builds
 * the same sources again in double, so central finite differences are accurate to ~1e-8.
 */
#ifndef PG_REAL_H
#define PG_REAL_H

#ifdef PG_REAL_DOUBLE
typedef double pg_real;
#else
typedef float pg_real;
#endif

#endif
